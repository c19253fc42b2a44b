r"""Checks record files in the original SAGAN format, record by record.

  python -m tfrecords_tools.inspect_tfrecords --input=data/train-*.tfrecords \
      [--num_classes=1000 --image_size=128 --output_png=grid.png --num_images=64]

--input is a file, a glob or a folder (its *.tfrecord(s) files). Counts the
records, decodes every one (all fields present, image_raw length =
height*width*3, depth 3), checks that every image has the same size and
every label lies in [0, --num_classes), prints a label histogram, and writes
a PNG grid of the first --num_images images. Exit status 1 if any record or
file is bad (each one named with its record index), 2 on a usage error.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
from typing import Dict, List, Optional, Tuple

from absl import app, flags
import numpy as np

from sagan_tf import quiet_start
from sagan_tf.errors import UserError

FLAGS = flags.FLAGS


@dataclasses.dataclass
class InspectReport:
  """Result of inspect(): counts, problems (file, record index or -1, what), samples."""
  files: List[str]
  records_per_file: Dict[str, int] = dataclasses.field(default_factory=dict)
  num_records: int = 0
  num_good: int = 0
  bad: List[Tuple[str, int, str]] = dataclasses.field(default_factory=list)
  image_shape: Optional[Tuple[int, int, int]] = None
  label_counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  leftovers: List[str] = dataclasses.field(default_factory=list)
  samples: List[np.ndarray] = dataclasses.field(default_factory=list)

  @property
  def ok(self) -> bool:
    return not self.bad

  def lines(self, max_bad: int = 50) -> List[str]:
    out = [f"{len(self.files)} file(s), {self.num_records} record(s), "
           f"{self.num_good} good, {len(self.bad)} bad."]
    if self.image_shape:
      h, w, d = self.image_shape
      out.append(f"Image size: {h}x{w}x{d}.")
    if self.label_counts:
      labels = sorted(self.label_counts)
      counts = [self.label_counts[k] for k in labels]
      out.append(f"Labels: {len(labels)} distinct, {labels[0]}..{labels[-1]}; "
                 f"images per label min {min(counts)}, max {max(counts)}, "
                 f"mean {np.mean(counts):.1f}.")
      missing = sorted(set(range(labels[-1] + 1)) - set(labels))
      if missing:
        out.append(f"Labels with no image below the maximum: {missing[:20]}"
                   + (" ..." if len(missing) > 20 else ""))
      if len(labels) <= 50:
        out.append("Label histogram: " + ", ".join(
            f"{k}: {self.label_counts[k]}" for k in labels))
    for path in self.leftovers:
      out.append(f"Note: {path} is an unfinished converter output (.tmp); "
                 "re-run the converter.")
    for path, index, what in self.bad[:max_bad]:
      where = f"record {index} of {path}" if index >= 0 else path
      out.append(f"BAD: {where}: {what}")
    if len(self.bad) > max_bad:
      out.append(f"... and {len(self.bad) - max_bad} more bad records.")
    return out


def resolve_input(spec: str) -> Tuple[List[str], List[str]]:
  """(record files, leftover .tmp files) for a file, glob or folder.

  The same rule as --dataset=tfrecords:SPEC (tfrecords_source.find_record_files).

  Raises:
    UserError: nothing found.
  """
  from sagan_tf.data import tfrecords_source
  files, leftovers = tfrecords_source.find_record_files(spec)
  if not files:
    raise UserError(f"--input={spec} matches no record files (a file, a glob such "
                    "as data/train-*.tfrecords, or a folder of *.tfrecords).")
  return files, leftovers


def inspect(files: List[str], *, num_classes: Optional[int] = None,
            image_size: Optional[int] = None, num_samples: int = 64) -> InspectReport:
  """Reads and checks every record of `files` (local or gs://)."""
  import tensorflow as tf
  from sagan_tf.data import records
  report = InspectReport(files=list(files))
  for path in files:
    count = 0
    try:
      for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        index = count
        count += 1
        try:
          rec = records.decode_record(raw)
        except records.RecordError as e:
          report.bad.append((path, index, f"record {e}"))
          continue
        shape = rec.image.shape
        if report.image_shape is None:
          report.image_shape = shape
        problem = None
        if shape != report.image_shape:
          problem = (f"image is {shape[0]}x{shape[1]}, the first good record is "
                     f"{report.image_shape[0]}x{report.image_shape[1]}")
        elif image_size and shape[:2] != (image_size, image_size):
          problem = f"image is {shape[0]}x{shape[1]}, not --image_size={image_size}"
        elif num_classes is not None and rec.label >= num_classes:
          problem = f"label {rec.label} is outside [0, --num_classes={num_classes})"
        if problem:
          report.bad.append((path, index, problem))
          continue
        report.num_good += 1
        report.label_counts[rec.label] += 1
        if len(report.samples) < num_samples:
          report.samples.append(rec.image)
    except tf.errors.OpError as e:
      # The reader stops at a truncated or corrupt record: name the first
      # record it could not read.
      reason = e.message.strip().splitlines()[0] if e.message else type(e).__name__
      report.bad.append((path, count, f"cannot read the record ({type(e).__name__}: "
                         f"{reason.split('}}')[-1].strip()}); the file is truncated or "
                         "corrupt: convert this shard again"))
    report.records_per_file[path] = count
    report.num_records += count
  return report


def run(input_spec: str, *, num_classes: Optional[int] = None,
        image_size: Optional[int] = None, output_png: str = "",
        num_images: int = 64, out=None) -> int:
  """The command: prints the report to `out` (stdout); returns the exit status."""
  out = out or sys.stdout
  try:
    files, leftovers = resolve_input(input_spec)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  report = inspect(files, num_classes=num_classes, image_size=image_size,
                   num_samples=num_images)
  report.leftovers = leftovers
  for line in report.lines():
    print(line, file=out)
  if output_png and report.samples:
    from sagan_tf import image_grid
    path = image_grid.save_image_grid(np.stack(report.samples), output_png,
                                      ncols=min(8, len(report.samples)))
    print(f"Wrote the first {len(report.samples)} images to {path}.", file=out)
  return 0 if report.ok else 1


def main(argv):
  del argv
  if FLAGS.verbose:
    quiet_start.set_verbose()
  quiet_start.import_quietly()
  return run(FLAGS.input, num_classes=FLAGS.num_classes, image_size=FLAGS.image_size,
             output_png=FLAGS.output_png, num_images=FLAGS.num_images)


if __name__ == "__main__":
  flags.DEFINE_string("input", None, "Record file, glob or folder (local or gs://).")
  flags.DEFINE_integer("num_classes", None, "Labels must be below this (optional).")
  flags.DEFINE_integer("image_size", None, "Expected image size (optional).")
  flags.DEFINE_string("output_png", "", "Write a grid of the first images here.")
  flags.DEFINE_integer("num_images", 64, "Images in the PNG grid.")
  flags.DEFINE_bool("verbose", False, "Show TensorFlow's start-up log lines.")
  flags.mark_flag_as_required("input")
  app.run(main)
