"""`--dataset=tfrecords:GLOB` or `tfrecords:FOLDER`: records in the original format.

A folder means its *.tfrecords files (find_record_files: the same rule as
inspect_tfrecords --input and the converters' --output_dir).

The pipeline keeps work per record minimal and does the decoding per batch:

  files (sharded per input pipeline, shuffled, repeated)
  -> parallel interleave of TFRecordDatasets, each record tagged with its file
     and index (so a bad record can be named)
  -> shuffle serialised records -> batch
  -> per batch: parse_example, byte-length and label checks, decode_raw,
     reshape [B, S, S, 3], x * 2/255 - 1 -> prefetch.

Every path goes through tf.io.gfile / tf.data, so gs:// works.
"""

from __future__ import annotations

import os
import re
import struct
import tempfile
import time
from typing import Iterable, List, Optional, Set, Tuple

from absl import logging
import tensorflow as tf

from sagan_tf.data import memory
from sagan_tf.data import records
from sagan_tf.errors import UserError

# Marks the messages of the checks below, so `translate_data_error` can tell
# them from other runtime errors.
BAD_RECORD = "Bad record:"

_INT64_MAX = 2**63 - 1
# Files read at once; more only helps on high-latency storage such as GCS.
_CYCLE_LENGTH = 16
# Read-ahead per open file (bytes); large reads matter on GCS.
_READ_BUFFER = 4 << 20
# Per-record overhead in the shuffle buffer besides the pixels: the
# serialised proto, the file name and the index.
_RECORD_OVERHEAD = 256

# Every record file a dataset of this process reads: where a truncated or
# corrupt record is looked for (TensorFlow's error names only a byte offset).
_FILES_READ: Set[str] = set()
_DAMAGE = re.compile(r"(truncated|corrupted) record at (\d+)")
_HEADER = 12  # uint64 length + uint32 masked CRC of the length
_FOOTER = 4  # uint32 masked CRC of the data
# Looking for the damaged file stops after this long (then the message says
# how to find it).
_LOCATE_SECONDS = 120.0
RECORD_SUFFIXES = (".tfrecords", ".tfrecord")
_SHARD_NAME = re.compile(r"^(.+)-\d{5}-of-\d{5}\.tfrecords?$")


def _as_folder(spec: str) -> Optional[str]:
  """`spec` without a trailing slash when it names a folder (no wildcards), else None."""
  spec = spec.rstrip("/") or "/"
  if any(c in spec for c in "*?[") or not tf.io.gfile.isdir(spec):
    return None
  return spec


def find_record_files(spec: str) -> Tuple[List[str], List[str]]:
  """(record files, unfinished `.tmp` files), both sorted, for a file, glob or folder.

  This is what a dataset path means everywhere (--dataset=tfrecords:SPEC,
  inspect_tfrecords --input, the converters' --output_dir): a folder means
  its *.tfrecords (and *.tfrecord) files; anything else is a glob (a plain
  file name is a glob matching itself). `.tmp` files are converter outputs
  still being written (or left by a killed run) and are never read.
  """
  folder = _as_folder(spec)
  if folder:
    paths = [f"{folder}/{n.rstrip('/')}" for n in tf.io.gfile.listdir(folder)]
    files = [p for p in paths if p.endswith(RECORD_SUFFIXES)]
    partial = [p for p in paths if p.endswith(".tmp") and ".tfrecord" in p]
  else:
    # (No isdir() per match: on GCS that is one request per file.)
    paths = tf.io.gfile.glob(spec)
    files = [p for p in paths if not p.endswith(".tmp")]
    partial = [p for p in paths if p.endswith(".tmp")]
  return sorted(files), sorted(partial)


def list_files(pattern: str) -> List[str]:
  """Sorted record files of a glob or folder (local or gs://), `.tmp` files excluded.

  Raises:
    UserError: nothing matches.
  """
  try:
    files, partial = find_record_files(pattern)
  except tf.errors.OpError as e:
    raise UserError(f"Cannot list --dataset=tfrecords:{pattern} ({e.message}); "
                    "check the path and your access to it.") from None
  if partial:
    logging.warning("Ignoring %d unfinished converter output file(s) such as %s; "
                    "re-run the converter to finish them.", len(partial), partial[0])
  if not files:
    raise UserError(
        f"--dataset=tfrecords:{pattern} matches no files of records (a glob such "
        "as data/train-*.tfrecords, or a folder of *.tfrecords); check the path, or "
        "make records with ./run.sh convert folder_to_tfrecords (or "
        "imagenet_to_tfrecords).")
  prefixes = sorted({m.group(1) for m in (_SHARD_NAME.match(f.rsplit("/", 1)[-1])
                                          for f in files) if m})
  if len(prefixes) > 1:
    logging.warning("--dataset=tfrecords:%s holds shards of %d kinds (%s): all of "
                    "them are read. To read one, name it, e.g. "
                    "--dataset=tfrecords:%s/%s-*.tfrecords.", pattern, len(prefixes),
                    ", ".join(prefixes), pattern.rstrip("/"), prefixes[-1])
  _FILES_READ.update(files)
  return files


def _readable(blob: bytes) -> bool:
  """Whether TensorFlow reads `blob` (one record's bytes) without an error."""
  with tempfile.TemporaryDirectory(prefix="sagan_record_check_") as d:
    path = os.path.join(d, "record.tfrecords")
    with open(path, "wb") as f:
      f.write(blob)
    try:
      for _ in tf.data.TFRecordDataset(path):
        pass
    except tf.errors.OpError:
      return False
  return True


def damaged_record_index(path: str, offset: int) -> Optional[int]:
  """Index of the record of `path` that cannot be read at byte `offset`, or None.

  TensorFlow's DataLossError names the byte offset of the read that failed:
  a record's start (its header) or the start of its data, 12 bytes later.
  This walks the record headers up to there (one 12-byte read per record,
  no data read) and checks that one record with TensorFlow's own reader, so
  a healthy file whose records happen to start at the same offset is not
  blamed.
  """
  with tf.io.gfile.GFile(path, "rb") as f:
    size = f.size()
    if size < offset:
      return None
    start, index = 0, 0
    while start < offset - _HEADER:
      f.seek(start)
      header = f.read(_HEADER)
      if len(header) < _HEADER:
        return None
      start += _HEADER + struct.unpack("<Q", header[:8])[0] + _FOOTER
      index += 1
    if start not in (offset, offset - _HEADER) or start >= size:
      return None
    f.seek(start)
    header = f.read(_HEADER)
    if len(header) < _HEADER:
      return index  # the file ends inside this record's header
    length = struct.unpack("<Q", header[:8])[0]
    if start + _HEADER + length + _FOOTER > size:
      return index  # the file ends inside this record
    blob = header + f.read(length + _FOOTER)
  return None if _readable(blob) else index


def locate_damaged_file(message: str, files: Optional[Iterable[str]] = None,
                        max_seconds: float = _LOCATE_SECONDS
                        ) -> Optional[Tuple[str, int, str]]:
  """(file, record index, what) of the damage a DataLossError message describes.

  Args:
    message: the error's message ("truncated record at 12716 ...",
      "corrupted record at 3191 ...").
    files: where to look (default: every file the datasets of this process read).
    max_seconds: give up after this long (None is returned).
  Returns:
    None when the message names no offset or no file shows the damage.
  """
  m = _DAMAGE.search(message or "")
  if not m:
    return None
  kind, offset = m.group(1), int(m.group(2))
  deadline = time.monotonic() + max_seconds
  for path in sorted(_FILES_READ if files is None else files):
    if time.monotonic() > deadline:
      return None
    try:
      index = damaged_record_index(path, offset)
    except tf.errors.OpError:
      continue  # (vanished or unreadable: not the one TensorFlow was reading)
    if index is not None:
      return path, index, f"{kind} record at byte {offset}"
  return None


def damaged_file_error(error: tf.errors.DataLossError) -> UserError:
  """The UserError for a truncated or corrupt record file met while reading."""
  message = error.message or ""
  found = locate_damaged_file(message)
  if found:
    path, index, what = found
    return UserError(
        f"Record {index} of {path} cannot be read ({what}): the file is truncated "
        "or corrupt. Delete it and run the converter again with the same flags "
        "(it rewrites only the missing shards), or check every file with "
        "./run.sh convert inspect_tfrecords --input=FOLDER.")
  detail = message.strip().splitlines()[-1].split("}}")[-1].strip()[:200]
  return UserError("A record file of the dataset is truncated or corrupt "
                   f"({detail}); find it with ./run.sh convert inspect_tfrecords "
                   "--input=FOLDER and convert that shard again.")


def image_size_of(files: List[str]) -> int:
  """Image size stored in the records (their first record's height).

  Raises:
    UserError: the records are not square RGB, or no file has a record.
  """
  for path in files[:8]:
    try:
      h, w, d = records.read_header(path)
    except records.RecordError:
      continue  # an empty shard: look at the next one
    except tf.errors.OpError as e:
      raise UserError(f"Cannot read the first record of {path} ({e.message.strip()}); "
                      "check it with ./run.sh convert inspect_tfrecords "
                      f"--input={path}.") from None
    if h < 0 or w < 0 or d < 0:
      raise UserError(f"The first record of {path} has no height/width/depth "
                      "features, so it is not in the original SAGAN format; "
                      "convert the images with ./run.sh convert folder_to_tfrecords.")
    if h != w or d != 3:
      raise UserError(f"The records in {path} hold {h}x{w}x{d} images; the "
                      "pipeline needs square RGB images (convert again with "
                      "./run.sh convert folder_to_tfrecords --image_size=N).")
    return h
  raise UserError(f"None of the first {min(len(files), 8)} files ({files[0]}, ...) "
                  "holds a record; check the data with ./run.sh convert "
                  "inspect_tfrecords.")


def check_image_size(files: List[str], image_size: int, pattern: str) -> None:
  """Raises UserError when the records' size differs from --image_size."""
  stored = image_size_of(files)
  if stored != image_size:
    raise UserError(
        f"The records of --dataset=tfrecords:{pattern} are {stored}x{stored} but "
        f"--image_size={image_size}; set --image_size={stored} or convert the "
        f"images again with --image_size={image_size}.")


def _tagged_records(path: tf.Tensor) -> tf.data.Dataset:
  """(serialised record, its index in the file, the file path) for one file."""
  recs = tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER)
  # zip rather than map: no per-record function call.
  return tf.data.Dataset.zip((recs, tf.data.Dataset.range(_INT64_MAX),
                              tf.data.Dataset.from_tensors(path).repeat()))


def _first_failure(ok: tf.Tensor) -> tf.Tensor:
  """Index of the first False in a bool vector (0 when all are True)."""
  return tf.argmin(tf.cast(ok, tf.int32), output_type=tf.int32)


def _assert_all(ok: tf.Tensor, message: tf.Tensor) -> tf.Operation:
  return tf.debugging.Assert(tf.reduce_all(ok), [message], summarize=1)


def _decode_fn(image_size: int, num_classes: int, batch_size: Optional[int]):
  """The per-batch decode: (records [B], index [B], file [B]) -> (images, labels)."""
  nbytes = image_size * image_size * 3

  def decode(serialized, index, path):
    image_raw, label = records.parse_batch(serialized)
    length = tf.strings.length(image_raw)
    len_ok = tf.equal(length, nbytes)
    i = _first_failure(len_ok)
    len_msg = tf.strings.join([
        BAD_RECORD, " record ", tf.strings.as_string(index[i]), " of ", path[i],
        " has ", tf.strings.as_string(length[i]),
        f" bytes of image_raw, not {image_size}*{image_size}*3 = {nbytes}; "
        "check the file with ./run.sh convert inspect_tfrecords."])
    label_ok = tf.logical_and(label >= 0, label < num_classes)
    j = _first_failure(label_ok)
    label_msg = tf.strings.join([
        BAD_RECORD, " record ", tf.strings.as_string(index[j]), " of ", path[j],
        tf.where(
            label[j] == records.MISSING_LABEL,
            " has no label feature, so it is not in the original SAGAN format; "
            "convert the images again with ./run.sh convert folder_to_tfrecords.",
            tf.strings.join([
                " has label ", tf.strings.as_string(label[j]),
                f", outside [0, --num_classes={num_classes}); set --num_classes "
                "to the number of classes of the data (./run.sh convert "
                "inspect_tfrecords prints the label range)."]))])
    with tf.control_dependencies([_assert_all(len_ok, len_msg),
                                  _assert_all(label_ok, label_msg)]):
      pixels = tf.io.decode_raw(image_raw, tf.uint8)
    b = batch_size if batch_size is not None else -1
    images = tf.reshape(pixels, [b, image_size, image_size, 3])
    return records.to_float(images), tf.cast(label, tf.int32)

  return decode


def make_tfrecords_dataset(
    pattern: str,
    *,
    image_size: int,
    num_classes: int,
    batch_size: int,
    training: bool,
    shuffle_buffer: int,
    seed: int,
    input_context: Optional[tf.distribute.InputContext] = None,
    skip: int = 0,
    take: int = -1,
) -> tf.data.Dataset:
  """Batches (images float32 [B, S, S, 3] in [-1, 1], labels int32 [B]).

  Args:
    pattern: glob of record files (local or gs://).
    image_size: expected S; checked against the records.
    num_classes: labels must lie in [0, num_classes); checked per batch.
    batch_size: per-pipeline batch B.
    training: True = shuffled, repeated, drop_remainder (static B);
      False = one pass in file order, last batch may be smaller.
    shuffle_buffer: requested buffer (records), capped by memory.
    seed: file-order and shuffle seed.
    input_context: shard files (or records, with fewer files than pipelines).
    skip, take: evaluation only: skip / keep that many records.
  """
  files = list_files(pattern)
  check_image_size(files, image_size, pattern)

  n_pipes = input_context.num_input_pipelines if input_context else 1
  pipe_id = input_context.input_pipeline_id if input_context else 0
  shard_records = n_pipes > 1 and len(files) < n_pipes
  if n_pipes > 1 and not shard_records:
    files = files[pipe_id::n_pipes]
    seed = seed + pipe_id  # different file order per pipeline
  elif shard_records:
    logging.warning("%d record files for %d input pipelines: sharding by record "
                    "(every pipeline reads every file). Write at least %d shards "
                    "to shard by file.", len(files), n_pipes, n_pipes)

  file_ds = tf.data.Dataset.from_tensor_slices(files)
  if shard_records:
    # Deterministic order first, then shard, so the pipelines' records are
    # disjoint; shuffling happens after.
    ds = file_ds.flat_map(_tagged_records).shard(n_pipes, pipe_id)
    if training:
      ds = ds.repeat()
  else:
    if training:
      file_ds = file_ds.shuffle(len(files), seed=seed,
                                reshuffle_each_iteration=True).repeat()
    ds = file_ds.interleave(
        _tagged_records, cycle_length=min(len(files), _CYCLE_LENGTH),
        block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not training)

  if training:
    buffer = memory.capped_shuffle_buffer(
        shuffle_buffer, image_size * image_size * 3 + _RECORD_OVERHEAD, "records")
    ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
  else:
    if skip:
      ds = ds.skip(skip)
    if take >= 0:
      ds = ds.take(take)

  ds = ds.batch(batch_size, drop_remainder=training)
  ds = ds.map(_decode_fn(image_size, num_classes, batch_size if training else None),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
  return ds.prefetch(tf.data.AUTOTUNE)


def records_folder(spec: str) -> Optional[str]:
  """The folder a glob or folder of records lives in (None when it has wildcards)."""
  folder = _as_folder(spec)
  if folder:
    return folder
  directory = spec.rsplit("/", 1)[0] if "/" in spec else "."
  return None if any(c in directory for c in "*?[") else directory


def labels_file_num_classes(pattern: str) -> Tuple[Optional[int], Optional[str]]:
  """Classes listed in the converters' labels.txt beside the records, if any.

  Args:
    pattern: a glob or folder of records (see find_record_files).
  Returns:
    (number of non-empty lines, path) or (None, None) when there is no file.
  """
  try:
    directory = records_folder(pattern)
    if directory is None:
      return None, None
    path = directory + "/labels.txt"
    if not tf.io.gfile.exists(path):
      return None, None
    with tf.io.gfile.GFile(path) as f:
      lines = [line for line in f.read().splitlines() if line.strip()]
  except tf.errors.OpError:
    return None, None
  return len(lines), path
