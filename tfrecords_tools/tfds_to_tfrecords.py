r"""A prepared TFDS image-classification dataset -> records in the original format.

  python -m tfrecords_tools.tfds_to_tfrecords --dataset=cifar10[:train] \
      --tfds_data_dir=DIR --output_dir=OUT [--image_size=128 --num_shards=0 ...]

Reads only what is already prepared in --tfds_data_dir (never downloads).
Each shard is one even part of the split (tfds.even_splits), so shards are
written in parallel and a re-run with the same flags resumes (see
folder_to_tfrecords for the manifest and --overwrite). Same preprocessing as
the other converters; labels.txt lists the ClassLabel names.
"""

from __future__ import annotations

from absl import app, flags, logging

from sagan_tf.data import tfds_source
from tfrecords_tools import convert_common
from tfrecords_tools import folder_to_tfrecords

FLAGS = flags.FLAGS


def convert_tfds(dataset: str, data_dir: str, output_dir: str, *, image_size: int = 128,
                 num_shards: int = 0, num_workers: int = 1, strict: bool = False,
                 prefix: str = "", jpeg_draft: bool = True, overwrite: bool = False,
                 log_every_secs: float = 10.0) -> convert_common.ConvertReport:
  """Converts NAME[:SPLIT] (default split 'train').

  Args:
    prefix: shard name prefix (default: the split name, e.g. 'train').
  """
  convert_common.check_image_size(image_size)
  name, split = tfds_source.parse_name(dataset)
  split = split or tfds_source.DEFAULT_SPLIT
  b = tfds_source.builder(name, data_dir)
  tfds_source.check_split(b, split)
  image_key, label_key = tfds_source.feature_keys(b.info)
  try:
    total = int(b.info.splits[split].num_examples)
  except (KeyError, ValueError, TypeError):
    total = 0  # unknown (sliced split, or not prepared: opening it will say so)
  num_shards = num_shards or convert_common.auto_num_shards(max(total, 1))
  # Opening the split first gives the "not prepared" error before any worker starts.
  tfds_source.open_split(name, data_dir, split, shuffle_files=False, seed=None)
  prefix = prefix or split.split("[")[0]
  jobs = [convert_common.ShardJob(
      k, f"{output_dir}/{convert_common.shard_name(prefix, k, num_shards)}",
      convert_common.TfdsItems(name, split, data_dir, k, num_shards, image_key,
                               label_key, num_examples=total // num_shards,
                               jpeg_draft=jpeg_draft))
          for k in range(num_shards)]
  class_names = list(b.info.features[label_key].names)
  settings = {
      "image_size": image_size, "num_shards": num_shards, "prefix": prefix,
      "jpeg_draft": jpeg_draft, "class_names": class_names,
      "inputs": {"kind": "tfds", "name": name, "split": split,
                 "version": str(b.info.version), "num_examples": total},
  }
  logging.info("Converting %s split %s (%s examples) into %d shard(s).", name, split,
               total or "?", num_shards)
  return convert_common.convert_jobs(
      jobs, output_dir, settings=settings, class_names=class_names,
      image_size=image_size, num_workers=num_workers, strict=strict,
      overwrite=overwrite, total_images=total, log_every_secs=log_every_secs)


def main(argv):
  del argv

  def go():
    report = convert_tfds(
        FLAGS.dataset, FLAGS.tfds_data_dir, FLAGS.output_dir,
        image_size=FLAGS.image_size, num_shards=FLAGS.num_shards,
        num_workers=FLAGS.num_workers, strict=FLAGS.strict,
        prefix=FLAGS.prefix, jpeg_draft=FLAGS.jpeg_draft, overwrite=FLAGS.overwrite)
    print(report.summary())
    return 0

  return folder_to_tfrecords.run_cli(go, FLAGS.verbose)


if __name__ == "__main__":
  flags.DEFINE_string("dataset", None, "TFDS NAME[:SPLIT], e.g. cifar10:train.")
  flags.DEFINE_string("tfds_data_dir", "", "TFDS data_dir holding the prepared "
                      "dataset (empty = ~/tensorflow_datasets).")
  folder_to_tfrecords.define_conversion_flags()
  FLAGS.set_default("prefix", "")
  flags.mark_flags_as_required(["dataset", "output_dir"])
  app.run(main)
