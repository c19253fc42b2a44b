r"""Class-per-folder images -> records in the original SAGAN format.

  python -m tfrecords_tools.folder_to_tfrecords --input_dir=DIR --output_dir=OUT \
      [--image_size=128 --num_shards=0 --num_workers=N --seed=0 --strict --overwrite]

DIR/<class>/... : labels are the indices of the sorted class-folder names
(written to OUT/labels.txt). A folder without subfolders is one class
(label 0). Any format PIL reads; files that are not readable images are
skipped and listed (or stop the run with --strict), as are symlinked
folders below the class folders (not followed) and entries that are not
regular files. --image_size must be a size the model trains.

A re-run into OUT with the same flags and inputs finishes an interrupted
conversion; OUT/manifest-PREFIX.json records them. Shards made otherwise
are refused, or with --overwrite deleted and made again.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from sagan_tf import quiet_start
from sagan_tf.errors import UserError
from tfrecords_tools import convert_common

FLAGS = flags.FLAGS


def define_conversion_flags(default_shards: int = 0) -> None:
  """Flags shared by the converters."""
  flags.DEFINE_string("output_dir", None, "Folder for the .tfrecords shards (local or gs://).")
  flags.DEFINE_integer("image_size", 128, "Output height = width (the original: 128).")
  flags.DEFINE_integer("num_shards", default_shards,
                       "Number of output files (0 = about 1024 images per shard).")
  flags.DEFINE_integer("num_workers", os.cpu_count() or 1,
                       "Processes writing shards in parallel.")
  flags.DEFINE_integer("seed", 0, "Seed of the shuffled file order.")
  flags.DEFINE_bool("strict", False, "Stop at the first unreadable image instead "
                    "of skipping it.")
  flags.DEFINE_bool("jpeg_draft", True, "Decode JPEGs at a reduced DCT scale when "
                    "they are at least twice --image_size (faster; off = full decode "
                    "then resize).")
  flags.DEFINE_string("prefix", "train", "Shard name prefix: PREFIX-00000-of-NNNNN.tfrecords.")
  flags.DEFINE_bool("overwrite", False, "Delete PREFIX-* shards in --output_dir that "
                    "were made with other flags or inputs, instead of refusing.")
  flags.DEFINE_bool("verbose", False, "Show TensorFlow's start-up log lines.")


def run_cli(fn, verbose: bool = False) -> int:
  """Runs fn() after a quiet TensorFlow import (quiet_start; --verbose: not
  quiet), printing a UserError as one line (exit 2)."""
  if verbose:
    quiet_start.set_verbose()
  quiet_start.import_quietly()
  try:
    return fn()
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


def convert_folder(input_dir: str, output_dir: str, **kwargs) -> convert_common.ConvertReport:
  """Lists DIR's class folders and converts them (kwargs: see convert_common.convert)."""
  convert_common.check_image_size(kwargs.get("image_size", 128))  # before a long listing
  listing = convert_common.list_class_folders(input_dir)
  for w in listing.warnings:
    logging.warning("%s", w)
  logging.info("%d files in %d class(es) under %s.", len(listing.files_and_labels),
               len(listing.class_names), input_dir)
  return convert_common.convert(listing.files_and_labels, output_dir,
                                class_names=listing.class_names,
                                skipped_inputs=listing.skipped, **kwargs)


def main(argv):
  del argv

  def go():
    report = convert_folder(
        FLAGS.input_dir, FLAGS.output_dir, image_size=FLAGS.image_size,
        num_shards=FLAGS.num_shards, num_workers=FLAGS.num_workers,
        strict=FLAGS.strict, seed=FLAGS.seed, prefix=FLAGS.prefix,
        jpeg_draft=FLAGS.jpeg_draft, overwrite=FLAGS.overwrite)
    print(report.summary())
    return 0

  return run_cli(go, FLAGS.verbose)


if __name__ == "__main__":
  flags.DEFINE_string("input_dir", None, "Folder with one subfolder per class (or only images).")
  define_conversion_flags()
  flags.mark_flags_as_required(["input_dir", "output_dir"])
  app.run(main)
