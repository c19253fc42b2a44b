"""Writing records in the original format: sharding, workers, resuming, reports.

A conversion is a list of shard jobs. Each job writes `NAME.tmp` and renames
it to `NAME` only when the shard is whole, so a file with the final name is
always complete: a re-run skips it, and a leftover `.tmp` is written again.
Shards are the unit of parallelism (`num_workers` processes, spawned, so
TensorFlow is never forked).

Unreadable images are skipped and listed at the end (and in
`skipped_images.txt`); with strict=True the first one stops the run with a
UserError naming it.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from sagan_tf.errors import UserError
from tfrecords_tools import preprocess

# Errors that mean "this image cannot be read", as opposed to bugs.
try:
  from PIL import Image, UnidentifiedImageError
  IMAGE_ERRORS = (OSError, ValueError, SyntaxError, UnidentifiedImageError,
                  Image.DecompressionBombError, EOFError)
except ImportError:  # pragma: no cover - PIL is a requirement
  IMAGE_ERRORS = (OSError, ValueError)

LABELS_FILE = "labels.txt"
SKIPPED_FILE = "skipped_images.txt"


# ------------------------------------------------------------------- inputs
class FileItems:
  """A shard's input: image files and their labels."""

  def __init__(self, files_and_labels: Sequence[Tuple[str, int]], jpeg_draft: bool = True):
    self.files_and_labels = list(files_and_labels)
    self.jpeg_draft = jpeg_draft

  def __len__(self) -> int:
    return len(self.files_and_labels)

  def iter_images(self, image_size: int) -> Iterator[Tuple[str, object, int]]:
    """Yields (file, uint8 [S, S, 3] or the exception that stopped it, label)."""
    for path, label in self.files_and_labels:
      try:
        yield path, preprocess.load_image(path, image_size, self.jpeg_draft), label
      except IMAGE_ERRORS as e:
        yield path, e, label


class TfdsItems:
  """A shard's input: one even part of a prepared TFDS split."""

  def __init__(self, name: str, split: str, data_dir: str, index: int, count: int,
               image_key: str, label_key: str, num_examples: int = 0,
               jpeg_draft: bool = True):
    self.name, self.split, self.data_dir = name, split, data_dir
    self.index, self.count = index, count
    self.image_key, self.label_key = image_key, label_key
    self.num_examples = num_examples  # for progress; 0 = unknown
    self.jpeg_draft = jpeg_draft

  def __len__(self) -> int:
    return self.num_examples

  def iter_images(self, image_size: int) -> Iterator[Tuple[str, object, int]]:
    import tensorflow_datasets as tfds
    from sagan_tf.data import tfds_source
    part = tfds.even_splits(self.split, self.count)[self.index]
    # Encoded bytes, decoded by PIL like image files: same preprocessing, and
    # a bad image is one skipped example rather than a failed iterator.
    _, ds = tfds_source.open_split(
        self.name, self.data_dir, part, shuffle_files=False, seed=None,
        decoders={self.image_key: tfds.decode.SkipDecoding()})
    for k, ex in enumerate(tfds.as_numpy(ds)):
      origin = f"{self.name}:{self.split} part {self.index} example {k}"
      label = int(ex[self.label_key])
      try:
        yield origin, preprocess.load_image(bytes(ex[self.image_key]), image_size,
                                            self.jpeg_draft), label
      except IMAGE_ERRORS as e:
        yield origin, e, label


# --------------------------------------------------------------------- jobs
@dataclasses.dataclass
class ShardJob:
  index: int
  path: str  # final file name; written as path + ".tmp" first
  items: object  # FileItems | TfdsItems


@dataclasses.dataclass
class ShardResult:
  index: int
  path: str
  written: int = 0
  skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
  already_complete: bool = False


@dataclasses.dataclass
class ConvertReport:
  """What a conversion did."""
  output_dir: str
  num_shards: int
  written: int = 0
  shards_written: int = 0
  shards_already_complete: int = 0
  skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
  seconds: float = 0.0
  files: List[str] = dataclasses.field(default_factory=list)

  def summary(self) -> str:
    lines = [f"Wrote {self.written} images in {self.shards_written} shard(s) to "
             f"{self.output_dir} in {self.seconds:.1f} s"
             + (f" ({self.written / self.seconds:.0f} images/s)" if self.seconds else "")
             + (f"; {self.shards_already_complete} shard(s) were already complete "
                "and kept" if self.shards_already_complete else "") + "."]
    if self.skipped:
      lines.append(f"Skipped {len(self.skipped)} unreadable image(s) (listed in "
                   f"{SKIPPED_FILE}):")
      lines += [f"  {origin}: {reason}" for origin, reason in self.skipped[:50]]
      if len(self.skipped) > 50:
        lines.append(f"  ... and {len(self.skipped) - 50} more")
    return "\n".join(lines)


def shard_name(prefix: str, index: int, num_shards: int) -> str:
  return f"{prefix}-{index:05d}-of-{num_shards:05d}.tfrecords"


def _describe(error: BaseException) -> str:
  text = str(error).strip().splitlines()[0] if str(error).strip() else ""
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def write_shard(job: ShardJob, image_size: int, strict: bool,
                on_image: Optional[Callable[[], None]] = None) -> ShardResult:
  """Writes one shard (skips it when its final file already exists).

  Raises:
    UserError: strict and an image is unreadable (the message names it).
  """
  import tensorflow as tf
  from sagan_tf.data import records
  result = ShardResult(job.index, job.path)
  if tf.io.gfile.exists(job.path):
    result.already_complete = True
    return result
  tmp = job.path + ".tmp"
  with tf.io.TFRecordWriter(tmp) as writer:
    for origin, image, label in job.items.iter_images(image_size):
      if on_image:
        on_image()
      if isinstance(image, BaseException):
        if strict:
          raise UserError(f"Cannot read image {origin} ({_describe(image)}); remove "
                          "or fix it, or run without --strict to skip unreadable "
                          "images.")
        result.skipped.append((origin, _describe(image)))
        continue
      writer.write(records.encode_example(image, label))
      result.written += 1
  tf.io.gfile.rename(tmp, job.path, overwrite=True)
  return result


def _write_shard_in_worker(args) -> ShardResult:
  job, image_size, strict = args
  return write_shard(job, image_size, strict)


def _worker_init() -> None:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


# ----------------------------------------------------------------- progress
class Progress:
  """Logs images done, images/s and ETA at most every `every_secs`."""

  def __init__(self, total: int, every_secs: float = 10.0):
    self.total, self.every = total, every_secs
    self.done = 0
    self.start = self.last = time.perf_counter()

  def add(self, n: int = 1, force: bool = False) -> None:
    self.done += n
    now = time.perf_counter()
    if force or now - self.last >= self.every:
      self.last = now
      rate = self.done / max(now - self.start, 1e-9)
      left = max(self.total - self.done, 0)
      eta = time.strftime("%H:%M:%S", time.gmtime(left / rate)) if rate > 0 else "?"
      logging.info("%d/%d images (%.1f images/s, ETA %s)", self.done,
                   self.total, rate, eta)


# ------------------------------------------------------------------ running
def run_jobs(jobs: Sequence[ShardJob], output_dir: str, *, image_size: int,
             num_workers: int = 1, strict: bool = False,
             total_images: int = 0, log_every_secs: float = 10.0) -> ConvertReport:
  """Runs shard jobs (in-process for num_workers <= 1) and collects the report."""
  import tensorflow as tf
  tf.io.gfile.makedirs(output_dir)
  report = ConvertReport(output_dir=output_dir, num_shards=len(jobs))
  progress = Progress(total_images or sum(len(j.items) for j in jobs), log_every_secs)
  start = time.perf_counter()

  def collect(res: ShardResult) -> None:
    report.files.append(res.path)
    if res.already_complete:
      report.shards_already_complete += 1
      logging.info("%s is already complete: kept.", res.path)
      return
    report.shards_written += 1
    report.written += res.written
    report.skipped += res.skipped

  if num_workers <= 1 or len(jobs) <= 1:
    for job in jobs:
      res = write_shard(job, image_size, strict, on_image=progress.add)
      collect(res)
  else:
    ctx = multiprocessing.get_context("spawn")  # never fork a TF process
    with ctx.Pool(min(num_workers, len(jobs)), initializer=_worker_init) as pool:
      for res in pool.imap_unordered(_write_shard_in_worker,
                                     [(j, image_size, strict) for j in jobs]):
        collect(res)
        if not res.already_complete:
          progress.add(len(jobs[res.index].items))
  report.seconds = time.perf_counter() - start
  progress.add(0, force=True)
  report.files.sort()
  if report.skipped:
    with tf.io.gfile.GFile(f"{output_dir}/{SKIPPED_FILE}", "w") as f:
      f.write("".join(f"{o}\t{r}\n" for o, r in report.skipped))
  logging.info("%s", report.summary().splitlines()[0])
  if report.skipped:
    logging.warning("Skipped %d unreadable image(s), such as %s; the list is in %s.",
                    len(report.skipped), report.skipped[0][0],
                    f"{output_dir}/{SKIPPED_FILE}")
  return report


def write_labels(output_dir: str, class_names: Sequence[str]) -> str:
  """labels.txt: one line per class, `index<TAB>name`, in label order."""
  import tensorflow as tf
  tf.io.gfile.makedirs(output_dir)
  path = f"{output_dir}/{LABELS_FILE}"
  with tf.io.gfile.GFile(path, "w") as f:
    f.write("".join(f"{i}\t{name}\n" for i, name in enumerate(class_names)))
  return path


def auto_num_shards(num_images: int, per_shard: int = 1024) -> int:
  """About `per_shard` images per shard, at least one."""
  return max(1, int(round(num_images / per_shard)))


def convert(files_and_labels: Sequence[Tuple[str, int]], output_dir: str, *,
            image_size: int = 128, num_shards: int = 0, num_workers: int = 1,
            strict: bool = False, seed: int = 0, prefix: str = "train",
            class_names: Optional[Sequence[str]] = None, jpeg_draft: bool = True,
            log_every_secs: float = 10.0) -> ConvertReport:
  """Converts image files to sharded records in the original format.

  Args:
    files_and_labels: (path, label) pairs.
    output_dir: where PREFIX-IIIII-of-NNNNN.tfrecords (and labels.txt) go.
    image_size: output height = width.
    num_shards: 0 = about 1024 images per shard; capped at the image count.
    num_workers: processes (shards are written in parallel).
    strict: stop at the first unreadable image instead of skipping it.
    seed: the file order is shuffled with it (classes mixed within shards).
    prefix: shard name prefix ("train" matches the default --dataset glob).
    class_names: written to labels.txt when given.
    jpeg_draft: decode JPEGs at a reduced DCT scale (faster; see preprocess).
  Returns:
    A ConvertReport.
  """
  items = list(files_and_labels)
  if not items:
    raise UserError(f"No images to convert into {output_dir}.")
  if image_size < 1:
    raise UserError(f"--image_size={image_size} must be positive.")
  num_shards = num_shards or auto_num_shards(len(items))
  if num_shards > len(items):
    logging.info("%d shards requested for %d images: writing %d.", num_shards,
                 len(items), len(items))
    num_shards = len(items)
  order = np.random.default_rng(seed).permutation(len(items))
  shuffled = [items[i] for i in order]
  jobs = [ShardJob(k, f"{output_dir}/{shard_name(prefix, k, num_shards)}",
                   FileItems(part, jpeg_draft))
          for k, part in enumerate(_split(shuffled, num_shards))]
  if class_names is not None:
    write_labels(output_dir, class_names)
  return run_jobs(jobs, output_dir, image_size=image_size, num_workers=num_workers,
                  strict=strict, total_images=len(items),
                  log_every_secs=log_every_secs)


def _split(items: list, parts: int) -> List[list]:
  """`parts` contiguous pieces whose sizes differ by at most one."""
  bounds = np.linspace(0, len(items), parts + 1).round().astype(int)
  return [items[bounds[k]:bounds[k + 1]] for k in range(parts)]


# ------------------------------------------------------------ input listing
def _is_hidden(name: str) -> bool:
  return name.startswith(".")


def list_class_folders(input_dir: str) -> Tuple[List[Tuple[str, int]], List[str],
                                                List[str]]:
  """Images of a class-per-folder tree, or of a flat folder (one class).

  Labels are indices of the sorted class-folder names. Every file under a
  class folder (recursively, hidden files excluded) is listed: the decoder,
  not the name, decides what is an image, and unreadable files are reported
  by the conversion.

  Returns:
    (files_and_labels, class_names, warnings).
  Raises:
    UserError: the folder does not exist or holds no files.
  """
  import tensorflow as tf
  input_dir = input_dir.rstrip("/") or "/"
  if not tf.io.gfile.isdir(input_dir):
    raise UserError(f"--input_dir={input_dir} is not a folder; pass the folder "
                    "that holds one subfolder per class (or the images).")
  entries = sorted(e.rstrip("/") for e in tf.io.gfile.listdir(input_dir)
                   if not _is_hidden(e))
  subdirs = [e for e in entries if tf.io.gfile.isdir(f"{input_dir}/{e}")]
  top_files = [e for e in entries if e not in subdirs]
  warnings = []
  if not subdirs:
    class_names = [os.path.basename(input_dir) or "images"]
    files = [(f"{input_dir}/{e}", 0) for e in top_files]
  else:
    if top_files:
      warnings.append(f"{len(top_files)} file(s) directly in {input_dir} (such as "
                      f"{top_files[0]}) are ignored: with class subfolders, only "
                      "files inside them are converted.")
    class_names = subdirs
    files = []
    for label, name in enumerate(subdirs):
      found = _walk_files(f"{input_dir}/{name}")
      if not found:
        warnings.append(f"Class folder {input_dir}/{name} is empty; label {label} "
                        "keeps its index but has no images.")
      files += [(f, label) for f in found]
  if not files:
    raise UserError(f"No files found in {input_dir}; put the images there, one "
                    "subfolder per class.")
  return files, class_names, warnings


def _walk_files(folder: str) -> List[str]:
  import tensorflow as tf
  out = []
  for root, dirs, names in tf.io.gfile.walk(folder):
    dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
    out += [f"{root.rstrip('/')}/{n}" for n in sorted(names) if not _is_hidden(n)]
  return sorted(out)
