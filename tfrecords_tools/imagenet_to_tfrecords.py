r"""ILSVRC2012 training images -> records in the original SAGAN format.

  python -m tfrecords_tools.imagenet_to_tfrecords --input_dir=ILSVRC2012_train \
      --output_dir=data [--image_size=128 --num_shards=1024 --num_workers=N --seed=0]

INPUT_DIR holds the synset folders (n01440764/*.JPEG, ...); labels are the
indices of the sorted synset names (0-999, as the original), written to
OUTPUT_DIR/labels.txt. The file order is shuffled with --seed so every shard
mixes classes. The images are decoded by content, so the CMYK and greyscale
JPEGs and the PNG named .JPEG in ILSVRC2012 convert like the others.
"""

from __future__ import annotations

import re

from absl import app, flags, logging

from sagan_tf.errors import UserError
from tfrecords_tools import convert_common
from tfrecords_tools import folder_to_tfrecords

FLAGS = flags.FLAGS
SYNSET = re.compile(r"^n\d{8}$")
ILSVRC_CLASSES = 1000


def list_imagenet(input_dir: str) -> convert_common.Listing:
  """The listing of an ILSVRC2012 train folder (class names = synsets).

  Raises:
    UserError: a subfolder is not a synset id, or there are no synset folders.
  """
  listing = convert_common.list_class_folders(input_dir)
  class_names = listing.class_names
  odd = [c for c in class_names if not SYNSET.match(c)]
  if odd:
    raise UserError(f"{input_dir} does not look like the ILSVRC2012 train layout "
                    f"(synset folders such as n01440764; found {odd[0]!r}); use "
                    "folder_to_tfrecords for other class-per-folder trees.")
  for w in listing.warnings:
    logging.warning("%s", w)
  if len(class_names) != ILSVRC_CLASSES:
    logging.warning("%d synset folders in %s (ILSVRC2012 has %d): labels are the "
                    "indices among these folders only.", len(class_names), input_dir,
                    ILSVRC_CLASSES)
  return listing


def convert_imagenet(input_dir: str, output_dir: str, **kwargs):
  """Converts an ILSVRC2012 train folder (kwargs: see convert_common.convert)."""
  convert_common.check_image_size(kwargs.get("image_size", 128))  # before a long listing
  listing = list_imagenet(input_dir)
  logging.info("%d images in %d synsets.", len(listing.files_and_labels),
               len(listing.class_names))
  return convert_common.convert(listing.files_and_labels, output_dir,
                                class_names=listing.class_names,
                                skipped_inputs=listing.skipped, **kwargs)


def main(argv):
  del argv

  def go():
    report = convert_imagenet(
        FLAGS.input_dir, FLAGS.output_dir, image_size=FLAGS.image_size,
        num_shards=FLAGS.num_shards, num_workers=FLAGS.num_workers,
        strict=FLAGS.strict, seed=FLAGS.seed, prefix=FLAGS.prefix,
        jpeg_draft=FLAGS.jpeg_draft, overwrite=FLAGS.overwrite)
    print(report.summary())
    return 0

  return folder_to_tfrecords.run_cli(go, FLAGS.verbose)


if __name__ == "__main__":
  flags.DEFINE_string("input_dir", None, "ILSVRC2012 train folder (synset subfolders).")
  folder_to_tfrecords.define_conversion_flags(default_shards=1024)
  flags.mark_flags_as_required(["input_dir", "output_dir"])
  app.run(main)
