"""Writing records in the original format: sharding, workers, resuming, reports.

A conversion is a list of shard jobs. Each job writes `NAME.PID.tmp` and
renames it to `NAME` only when the shard is whole, so a file with the final
name is always complete. Shards are the unit of parallelism (`num_workers`
processes, spawned, so TensorFlow is never forked; a worker whose parent
dies exits within a second).

`manifest-PREFIX.json` beside the shards and labels.txt records what made
them (image size, shard count, seed, decoding, class names and a digest of
the inputs). It is written before the first shard with "complete": false
and rewritten last with "complete": true. A re-run with the same settings
keeps the complete shards and writes the missing ones; shards made with
other settings (or without a manifest) are never kept or mixed: the
conversion refuses, naming the differences, or with overwrite=True deletes
them all first.

Inputs that cannot be converted (unreadable images, files that are not
regular files, symlinked folders) are skipped and listed at the end (and in
`skipped_images.txt`); with strict=True the first unreadable image stops the
run with a UserError naming it. A conversion that writes no image at all is
an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import stat
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from sagan_tf import atomic_write
from sagan_tf import quiet_start
from sagan_tf.errors import UserError, storage_errors
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
MANIFEST_FORMAT = 1
# How often a worker checks that its parent is alive (seconds).
_PARENT_POLL_SECS = 0.5


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
  path: str  # final file name; written as path + ".PID.tmp" first
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
  manifest: str = ""

  def summary(self) -> str:
    lines = [f"Wrote {self.written} images in {self.shards_written} shard(s) to "
             f"{self.output_dir} in {self.seconds:.1f} s"
             + (f" ({self.written / self.seconds:.0f} images/s)" if self.seconds else "")
             + (f"; {self.shards_already_complete} shard(s) made with the same "
                "settings were already complete and kept"
                if self.shards_already_complete else "") + "."]
    if self.skipped:
      lines.append(f"Skipped {len(self.skipped)} input(s) that are not readable "
                   f"images (listed in {SKIPPED_FILE}):")
      lines += [f"  {origin}: {reason}" for origin, reason in self.skipped[:50]]
      if len(self.skipped) > 50:
        lines.append(f"  ... and {len(self.skipped) - 50} more")
    return "\n".join(lines)


def shard_name(prefix: str, index: int, num_shards: int) -> str:
  return f"{prefix}-{index:05d}-of-{num_shards:05d}.tfrecords"


def manifest_name(prefix: str) -> str:
  """`manifest-PREFIX.json`: not matched by a PREFIX-* glob or a folder's *.tfrecords."""
  return f"manifest-{prefix}.json"


def _describe(error: BaseException) -> str:
  text = str(error).strip().splitlines()[0] if str(error).strip() else ""
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def write_shard(job: ShardJob, image_size: int, strict: bool,
                on_image: Optional[Callable[[], None]] = None) -> ShardResult:
  """Writes one shard (skips it when its final file already exists).

  The temporary name carries the process id, so two processes writing the
  same shard (a rerun beside a dying worker of a killed run) never share a
  file.

  Raises:
    UserError: strict and an image is unreadable (the message names it), or
      the output folder's disk is full or not writable.
  """
  import tensorflow as tf
  result = ShardResult(job.index, job.path)
  if tf.io.gfile.exists(job.path):
    result.already_complete = True
    return result
  tmp = f"{job.path}.{os.getpid()}.tmp"
  # (A disk error becomes a UserError here, in the worker: TensorFlow's
  # errors do not always survive the trip back to the parent.)
  with _disk_errors(os.path.dirname(job.path)):
    _write_shard_file(job, tmp, image_size, strict, on_image, result)
  return result


def _write_shard_file(job: ShardJob, tmp: str, image_size: int, strict: bool,
                      on_image: Optional[Callable[[], None]], result: ShardResult) -> None:
  import tensorflow as tf
  from sagan_tf.data import records
  try:
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
  except BaseException:
    try:
      if tf.io.gfile.exists(tmp):
        tf.io.gfile.remove(tmp)
    except tf.errors.OpError:
      pass
    raise


def _disk_errors(output_dir: str):
  """A full or unwritable output folder -> UserError naming it (errors.storage_errors)."""
  def kept() -> str:
    import tensorflow as tf
    try:
      done = tf.io.gfile.glob(f"{output_dir}/*.tfrecords")
    except tf.errors.OpError:
      done = []
    if not done:
      return "no shard was written and no partial .tmp file is left"
    return ("the shards completed so far are kept, no partial .tmp file is left, and the "
            "manifest still says the conversion is incomplete")

  return storage_errors(
      output_dir, kept,
      "re-run the same command: it keeps the complete shards and writes the rest")


def _write_shard_in_worker(args) -> ShardResult:
  job, image_size, strict = args
  return write_shard(job, image_size, strict)


def _exit_when_orphaned(parent_pid: int) -> None:
  while True:
    time.sleep(_PARENT_POLL_SECS)
    if os.getppid() != parent_pid:
      os._exit(3)  # pylint: disable=protected-access  (no cleanup: the parent is gone)


def _worker_init(parent_pid: Optional[int] = None) -> None:
  """Pool initializer: quiet TensorFlow, no GPU, and die with the parent.

  A killed parent (kill -9, or SIGTERM, which runs no cleanup) cannot stop
  its workers; a worker notices it was re-parented and exits, so nothing
  writes into the output folder after the converter is gone.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  if parent_pid is not None:
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True,
                     name="exit-when-orphaned").start()
  quiet_start.import_quietly()  # verbose when the parent is (the environment says)


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
  """Runs shard jobs (in-process for num_workers <= 1) and collects the report.

  Only the shard files are written here; convert_jobs adds the output-folder
  checks, labels.txt, the manifest and the skipped list.
  """
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
    with ctx.Pool(min(num_workers, len(jobs)), initializer=_worker_init,
                  initargs=(os.getpid(),)) as pool:
      for res in pool.imap_unordered(_write_shard_in_worker,
                                     [(j, image_size, strict) for j in jobs]):
        collect(res)
        if not res.already_complete:
          progress.add(len(jobs[res.index].items))
  report.seconds = time.perf_counter() - start
  progress.add(0, force=True)
  report.files.sort()
  return report


# ------------------------------------------------------- the output folder
def labels_text(class_names: Sequence[str]) -> str:
  """labels.txt: one line per class, `index<TAB>name`, in label order."""
  return "".join(f"{i}\t{name}\n" for i, name in enumerate(class_names))


def write_labels(output_dir: str, class_names: Sequence[str]) -> str:
  """Writes OUTPUT_DIR/labels.txt (atomically); returns its path."""
  import tensorflow as tf
  tf.io.gfile.makedirs(output_dir)
  return atomic_write.write_text(f"{output_dir}/{LABELS_FILE}", labels_text(class_names))


def inputs_digest(files_and_labels: Sequence[Tuple[str, int]]) -> str:
  """sha256 of the (path, label) list in order: which files, with which labels."""
  h = hashlib.sha256()
  for path, label in files_and_labels:
    h.update(f"{path}\t{label}\n".encode("utf-8", "surrogateescape"))
  return h.hexdigest()


def _read_json(path: str):
  """The JSON value at path; None when missing; "unreadable" when it is not JSON."""
  import tensorflow as tf
  if not tf.io.gfile.exists(path):
    return None
  try:
    with tf.io.gfile.GFile(path) as f:
      return json.loads(f.read())
  except (ValueError, UnicodeDecodeError, tf.errors.OpError):
    return "unreadable"


def _read_text(path: str) -> Optional[str]:
  import tensorflow as tf
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return f.read()


def _differences(old: Dict, new: Dict) -> List[str]:
  out = []
  for key in sorted(set(old) | set(new)):
    if old.get(key) != new.get(key):
      a, b = old.get(key), new.get(key)
      if key == "class_names" and isinstance(a, list) and isinstance(b, list):
        out.append(f"class_names: {len(a)} classes then, {len(b)} now"
                   + (f" (such as {sorted(set(a) ^ set(b))[0]!r})"
                      if set(a) ^ set(b) else " (other order)"))
      elif key == "inputs":
        out.append("the input files or their labels differ")
      else:
        out.append(f"{key}: {a!r} then, {b!r} now")
  return out


def _prepare_output(output_dir: str, prefix: str, settings: Dict,
                    expected: Sequence[str], class_names: Optional[Sequence[str]],
                    overwrite: bool) -> None:
  """Makes sure no shard of another conversion stays in PREFIX-*; clears leftovers.

  Raises:
    UserError: shards not made with `settings` are there and not overwrite,
      or labels.txt (which other shards there use) lists other classes.
  """
  import tensorflow as tf
  tf.io.gfile.makedirs(output_dir)
  own = re.compile(rf"^{re.escape(prefix)}-\d{{5}}-of-\d{{5}}\.tfrecords(\.\d+\.tmp|\.tmp)?$")
  present = [p for p in tf.io.gfile.glob(f"{output_dir}/{prefix}-*-of-*.tfrecords*")
             if own.match(p.rsplit("/", 1)[-1])]
  shards = sorted(p for p in present if p.endswith(".tfrecords"))
  leftovers = [p for p in present if p.endswith(".tmp")]
  manifest_path = f"{output_dir}/{manifest_name(prefix)}"
  problems = []
  if shards:
    old = _read_json(manifest_path)
    if old is None:
      problems.append(f"there is no {manifest_name(prefix)} saying how they were made")
    elif not isinstance(old, dict) or not isinstance(old.get("settings"), dict):
      problems.append(f"{manifest_name(prefix)} is unreadable")
    else:
      problems += _differences(old["settings"], settings)
    stale = sorted(set(shards) - set(expected))
    if stale and not problems:
      problems.append(f"{len(stale)} shard(s) such as {stale[0]} are not part of it")
  if class_names is not None:
    old_labels = _read_text(f"{output_dir}/{LABELS_FILE}")
    mine = set(shards)
    others = [p for p in tf.io.gfile.glob(f"{output_dir}/*.tfrecords") if p not in mine]
    if old_labels not in (None, labels_text(class_names)) and others:
      raise UserError(
          f"{output_dir}/{LABELS_FILE} lists other classes than this conversion "
          f"and other shards there (such as {others[0]}) use it; convert into "
          "another --output_dir.")
  if problems:
    if not overwrite:
      raise UserError(
          f"{output_dir} already holds {len(shards)} {prefix}-* shard(s) that this "
          f"command would not make ({'; '.join(problems)}). Pass --overwrite to "
          "delete them and convert again, or choose another --output_dir.")
    logging.warning("Deleting %d %s-* shard(s) in %s made with other settings (%s).",
                    len(shards), prefix, output_dir, "; ".join(problems))
    # The manifest goes first: an interrupted deletion leaves shards without
    # one, which the next run refuses again.
    for path in [manifest_path, f"{output_dir}/{SKIPPED_FILE}"] + shards:
      if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)
  for path in leftovers:  # unfinished shards of killed runs
    try:
      tf.io.gfile.remove(path)
    except tf.errors.NotFoundError:
      pass  # (its writer just finished or removed it)


def _write_skipped(output_dir: str, skipped: Sequence[Tuple[str, str]],
                   resumed: bool) -> None:
  """SKIPPED_FILE: `origin<TAB>reason` lines; a resumed run keeps the earlier ones."""
  import tensorflow as tf
  path = f"{output_dir}/{SKIPPED_FILE}"
  lines = [f"{o}\t{r}\n" for o, r in skipped]
  earlier = _read_text(path) if resumed else None
  if earlier:
    lines = sorted(set(earlier.splitlines(keepends=True)) | set(lines))
  if lines:
    atomic_write.write_text(path, "".join(lines))
  elif tf.io.gfile.exists(path):
    tf.io.gfile.remove(path)  # from an earlier run of other inputs
  if skipped:
    logging.warning("Skipped %d input(s), such as %s; the list is in %s.",
                    len(skipped), skipped[0][0], path)


def _write_manifest(output_dir: str, prefix: str, settings: Dict,
                    shards: Sequence[str], complete: bool) -> str:
  return atomic_write.write_json(f"{output_dir}/{manifest_name(prefix)}", {
      "format": MANIFEST_FORMAT,
      "complete": complete,
      "settings": settings,
      "shards": [os.path.basename(p) for p in shards],
  })


def check_image_size(image_size: int) -> None:
  """Refuses a size the model cannot train (the rule of Config.validate).

  Raises:
    UserError: naming the size and the allowed ones.
  """
  from sagan_tf.config import Config, ConfigError
  # Only image_size varies: the attention resolutions depend on it, so they
  # are cleared, and validate() checks the size first.
  probe = dataclasses.replace(Config(), image_size=image_size, g_attention_res=(),
                              d_attention_res=())
  try:
    probe.validate()
  except ConfigError as e:
    raise UserError(f"{e} The model trains only those sizes, so the converters "
                    "write no others.") from None


def convert_jobs(jobs: Sequence[ShardJob], output_dir: str, *, settings: Dict,
                 class_names: Optional[Sequence[str]], image_size: int,
                 num_workers: int = 1, strict: bool = False, overwrite: bool = False,
                 total_images: int = 0, skipped_inputs: Sequence[Tuple[str, str]] = (),
                 log_every_secs: float = 10.0) -> ConvertReport:
  """A whole conversion: folder check, labels.txt, shards, skipped list, manifest.

  Args:
    settings: everything that decides the shards' content (JSON values); a
      complete earlier conversion is kept only when it had the same.
    skipped_inputs: (origin, reason) of inputs left out before conversion.
  Raises:
    UserError: see _prepare_output; no image at all could be written.
  """
  with _disk_errors(output_dir):
    return _convert_jobs(jobs, output_dir, settings=settings, class_names=class_names,
                         image_size=image_size, num_workers=num_workers, strict=strict,
                         overwrite=overwrite, total_images=total_images,
                         skipped_inputs=skipped_inputs, log_every_secs=log_every_secs)


def _convert_jobs(jobs, output_dir, *, settings, class_names, image_size, num_workers,
                  strict, overwrite, total_images, skipped_inputs, log_every_secs):
  import tensorflow as tf
  prefix = settings["prefix"]
  expected = [j.path for j in jobs]
  _prepare_output(output_dir, prefix, settings, expected, class_names, overwrite)
  _write_manifest(output_dir, prefix, settings, expected, complete=False)
  if class_names is not None:
    write_labels(output_dir, class_names)
  report = run_jobs(jobs, output_dir, image_size=image_size, num_workers=num_workers,
                    strict=strict, total_images=total_images,
                    log_every_secs=log_every_secs)
  report.skipped = list(skipped_inputs) + report.skipped
  _write_skipped(output_dir, report.skipped, resumed=report.shards_already_complete > 0)
  if report.written == 0 and all(
      tf.io.gfile.stat(p).length == 0 for p in report.files):
    for path in report.files + [f"{output_dir}/{manifest_name(prefix)}"]:
      tf.io.gfile.remove(path)
    first = (f", such as {report.skipped[0][0]} ({report.skipped[0][1]})"
             if report.skipped else "")
    raise UserError(f"No image could be converted into {output_dir}: "
                    f"{len(report.skipped)} input(s) skipped{first}"
                    + (f"; all are listed in {output_dir}/{SKIPPED_FILE}"
                       if report.skipped else "")
                    + ". Check the input path and the files.")
  report.manifest = _write_manifest(output_dir, prefix, settings, expected, complete=True)
  return report


def auto_num_shards(num_images: int, per_shard: int = 1024) -> int:
  """About `per_shard` images per shard, at least one."""
  return max(1, int(round(num_images / per_shard)))


def convert(files_and_labels: Sequence[Tuple[str, int]], output_dir: str, *,
            image_size: int = 128, num_shards: int = 0, num_workers: int = 1,
            strict: bool = False, seed: int = 0, prefix: str = "train",
            class_names: Optional[Sequence[str]] = None, jpeg_draft: bool = True,
            overwrite: bool = False, skipped_inputs: Sequence[Tuple[str, str]] = (),
            log_every_secs: float = 10.0) -> ConvertReport:
  """Converts image files to sharded records in the original format.

  Args:
    files_and_labels: (path, label) pairs.
    output_dir: where PREFIX-IIIII-of-NNNNN.tfrecords (and labels.txt) go.
    image_size: output height = width; a size the model trains (32..512,
      powers of two).
    num_shards: 0 = about 1024 images per shard; capped at the image count.
    num_workers: processes (shards are written in parallel).
    strict: stop at the first unreadable image instead of skipping it.
    seed: the file order is shuffled with it (classes mixed within shards).
    prefix: shard name prefix ("train" matches the default --dataset glob).
    class_names: written to labels.txt when given.
    jpeg_draft: decode JPEGs at a reduced DCT scale (faster; see preprocess).
    overwrite: delete PREFIX-* shards made with other settings instead of
      refusing.
    skipped_inputs: (path, reason) of inputs the listing left out; reported.
  Returns:
    A ConvertReport.
  """
  items = list(files_and_labels)
  if not items:
    raise UserError(f"No images to convert into {output_dir}.")
  check_image_size(image_size)
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
  settings = {
      "image_size": image_size, "num_shards": num_shards, "seed": seed,
      "prefix": prefix, "jpeg_draft": jpeg_draft,
      "class_names": None if class_names is None else list(class_names),
      "inputs": {"kind": "files", "count": len(items), "sha256": inputs_digest(items)},
  }
  return convert_jobs(jobs, output_dir, settings=settings, class_names=class_names,
                      image_size=image_size, num_workers=num_workers, strict=strict,
                      overwrite=overwrite, total_images=len(items),
                      skipped_inputs=skipped_inputs, log_every_secs=log_every_secs)


def _split(items: list, parts: int) -> List[list]:
  """`parts` contiguous pieces whose sizes differ by at most one."""
  bounds = np.linspace(0, len(items), parts + 1).round().astype(int)
  return [items[bounds[k]:bounds[k + 1]] for k in range(parts)]


# ------------------------------------------------------------ input listing
@dataclasses.dataclass
class Listing:
  """The inputs of a class-per-folder tree."""
  files_and_labels: List[Tuple[str, int]]
  class_names: List[str]
  warnings: List[str]
  skipped: List[Tuple[str, str]]  # (path, why it is not converted)


def _is_hidden(name: str) -> bool:
  return name.startswith(".")


def _is_local(path: str) -> bool:
  return "://" not in path


def _not_regular(mode: int) -> str:
  kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else
          "a socket" if stat.S_ISSOCK(mode) else
          "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
          "not a regular file")
  return f"{kind}, not an image file: skipped"


def _entry_kind(entry: os.DirEntry) -> Tuple[str, str]:
  """("dir" | "file" | "skip", reason) of a local folder entry.

  Symlinked folders are not followed (a link to a parent or a sibling would
  convert images many times, or under another class's label); symlinked
  files are read when they point to a regular file.
  """
  try:
    if entry.is_symlink():
      if entry.is_dir():
        return "skip", "symlinked folder: not followed"
      mode = os.stat(entry.path).st_mode
      return ("file", "") if stat.S_ISREG(mode) else ("skip", _not_regular(mode))
    if entry.is_dir(follow_symlinks=False):
      return "dir", ""
    if entry.is_file(follow_symlinks=False):
      return "file", ""
    return "skip", _not_regular(entry.stat(follow_symlinks=False).st_mode)
  except OSError as e:
    return "skip", f"cannot be read ({e.strerror or e}): skipped"


def _walk_local(folder: str) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]]]:
  """([(file, its real path)], skipped entries) under a local folder.

  Links to folders are not followed, so a file's real path is its folder's
  plus its name unless the file itself is a link (no realpath() per file).
  """
  files, skipped, stack = [], [], [(folder, os.path.realpath(folder))]
  while stack:
    directory, real_dir = stack.pop()
    try:
      with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
      skipped.append((directory, f"folder cannot be listed ({e.strerror or e})"))
      continue
    for entry in entries:
      if _is_hidden(entry.name):
        continue
      path = f"{directory}/{entry.name}"
      kind, reason = _entry_kind(entry)
      if kind == "dir":
        stack.append((path, f"{real_dir}/{entry.name}"))
      elif kind == "file":
        files.append((path, os.path.realpath(path) if entry.is_symlink()
                      else f"{real_dir}/{entry.name}"))
      else:
        skipped.append((path, reason))
  return sorted(files), sorted(skipped)


def _walk_gfile(folder: str) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]]]:
  """Files under a folder of an object store (gs://: no links, no special files)."""
  import tensorflow as tf
  out = []
  for root, dirs, names in tf.io.gfile.walk(folder):
    dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
    out += [f"{root.rstrip('/')}/{n}" for n in sorted(names) if not _is_hidden(n)]
  return sorted((p, p) for p in out), []


def _check_class_folders_apart(input_dir: str, class_dirs: Sequence[str]) -> None:
  """Refuses class folders (possibly symlinks) that contain each other or the input.

  Raises:
    UserError: naming the two folders.
  """
  real_input = os.path.realpath(input_dir)
  real = {os.path.realpath(d): d for d in reversed(class_dirs)}
  for d in class_dirs:
    r = os.path.realpath(d)
    if real_input == r or real_input.startswith(r.rstrip("/") + "/"):
      raise UserError(f"Class folder {d} is (a link to) {r}, which holds the input "
                      f"folder {input_dir} itself; remove the link.")
    if real[r] != d:
      raise UserError(f"Class folders {real[r]} and {d} are the same folder ({r}); "
                      "remove one of them.")
    parent = os.path.dirname(r)
    while parent and parent != os.path.dirname(parent):
      if parent in real:
        raise UserError(f"Class folder {d} ({r}) lies inside class folder "
                        f"{real[parent]}; its images would get two labels. Move it "
                        "or remove the link.")
      parent = os.path.dirname(parent)


def list_class_folders(input_dir: str) -> Listing:
  """Images of a class-per-folder tree, or of a flat folder (one class).

  Labels are indices of the sorted class-folder names. Every regular file
  under a class folder (recursively, hidden files excluded) is listed: the
  decoder, not the name, decides what is an image, and unreadable files are
  reported by the conversion. A class folder itself may be a symlink; below
  it, symlinked folders are not followed, and entries that are not regular
  files (named pipes, sockets, devices, broken links) are skipped; both are
  listed in `skipped`. A file reached twice (through a file symlink) is
  converted once, under the first label.

  Raises:
    UserError: the folder does not exist, holds no files, or has class
      folders that overlap.
  """
  import tensorflow as tf
  input_dir = input_dir.rstrip("/") or "/"
  if not tf.io.gfile.isdir(input_dir):
    raise UserError(f"--input_dir={input_dir} is not a folder; pass the folder "
                    "that holds one subfolder per class (or the images).")
  local = _is_local(input_dir)
  skipped: List[Tuple[str, str]] = []
  if local:
    with os.scandir(input_dir) as it:
      entries = sorted((e for e in it if not _is_hidden(e.name)), key=lambda e: e.name)
    subdirs = [e.name for e in entries if e.is_dir()]  # symlinked class folders count
    top_files = []
    for e in entries:
      if e.name in subdirs:
        continue
      kind, reason = _entry_kind(e)
      if kind == "file":
        top_files.append(e.name)
      else:
        skipped.append((f"{input_dir}/{e.name}", reason))
    walk = _walk_local
  else:
    names = sorted(e.rstrip("/") for e in tf.io.gfile.listdir(input_dir)
                   if not _is_hidden(e))
    subdirs = [e for e in names if tf.io.gfile.isdir(f"{input_dir}/{e}")]
    top_files = [e for e in names if e not in subdirs]
    walk = _walk_gfile
  warnings = []
  if not subdirs:
    class_names = [os.path.basename(input_dir) or "images"]
    files = [(f"{input_dir}/{e}", 0) for e in top_files]
  else:
    if local:
      _check_class_folders_apart(input_dir, [f"{input_dir}/{d}" for d in subdirs])
    if top_files:
      warnings.append(f"{len(top_files)} file(s) directly in {input_dir} (such as "
                      f"{top_files[0]}) are ignored: with class subfolders, only "
                      "files inside them are converted.")
    class_names = subdirs
    files, seen = [], {}
    for label, name in enumerate(subdirs):
      found, left_out = walk(f"{input_dir}/{name}")
      skipped += left_out
      if not found:
        warnings.append(f"Class folder {input_dir}/{name} is empty; label {label} "
                        "keeps its index but has no images.")
      for f, real in found:
        if real in seen:
          skipped.append((f, f"the same file as {seen[real]}: converted once"))
          continue
        seen[real] = f
        files.append((f, label))
  links = [p for p, why in skipped if why.startswith("symlinked folder")]
  if links:
    warnings.append(f"{len(links)} symlinked folder(s) such as {links[0]} were not "
                    "followed; link class folders at the top level instead.")
  if not files:
    raise UserError(f"No image files found in {input_dir}"
                    + (f" ({len(skipped)} entries skipped, such as {skipped[0][0]}: "
                       f"{skipped[0][1]})" if skipped else "")
                    + "; put the images there, one subfolder per class.")
  return Listing(files, class_names, warnings, skipped)
