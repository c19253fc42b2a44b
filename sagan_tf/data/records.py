"""The original SAGAN TFRecord format: one `tf.train.Example` per image.

Features (SPEC.md, "Data"):
  image_raw  bytes   H*W*3 uint8, HWC, RGB
  label      int64   class index (index of the sorted class-folder name)
  height, width, depth  int64

Readers decode `x * (2/255) - 1`, so a stored uint8 value v becomes
v * 2/255 - 1 in [-1, 1], and `to_uint8` inverts it exactly.

Two decoders live here: a batched TensorFlow one for the input pipeline
(`parse_batch`) and a per-record Python one for the tools (`decode_record`),
which says in words what is wrong with a bad record.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np
import tensorflow as tf

IMAGE_RAW = "image_raw"
LABEL = "label"
HEIGHT = "height"
WIDTH = "width"
DEPTH = "depth"

# A missing label reads as this value, so the pipeline's label check (which
# names the file and record) catches it instead of parse_example failing
# with a message that names neither.
MISSING_LABEL = -1

# Only the two features the pipeline needs; the size fields are checked once
# per dataset (read_header) and, for every record, through the byte length.
BATCH_FEATURES = {
    IMAGE_RAW: tf.io.FixedLenFeature([], tf.string, default_value=""),
    LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=MISSING_LABEL),
}

HEADER_FEATURES = {
    HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    DEPTH: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
}


def encode_example(image: np.ndarray, label: int) -> bytes:
  """Serialises one image in the original format.

  Args:
    image: uint8 [H, W, 3], RGB.
    label: class index >= 0.
  Returns:
    A serialised `tf.train.Example`.
  """
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"encode_example needs uint8 [H, W, 3], got {image.dtype} "
                     f"{image.shape}")
  h, w, d = image.shape

  def i64(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))

  feature = {
      IMAGE_RAW: tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[np.ascontiguousarray(image).tobytes()])),
      LABEL: i64(label),
      HEIGHT: i64(h),
      WIDTH: i64(w),
      DEPTH: i64(d),
  }
  # deterministic=True sorts the feature map, so the same image gives the same
  # bytes in every process (reproducible, comparable shards).
  return tf.train.Example(features=tf.train.Features(
      feature=feature)).SerializeToString(deterministic=True)


@dataclasses.dataclass(frozen=True)
class DecodedRecord:
  """One record decoded in Python: image uint8 [H, W, 3] and its label."""
  image: np.ndarray
  label: int


class RecordError(ValueError):
  """A record that does not follow the format; the message says how."""


def _int_feature(feature_map, name: str):
  if name not in feature_map:
    raise RecordError(f"has no '{name}' feature")
  values = feature_map[name].int64_list.value
  if len(values) != 1:
    raise RecordError(f"'{name}' should hold one int64, holds {len(values)} "
                      f"({feature_map[name].WhichOneof('kind')})")
  return int(values[0])


def decode_record(record: bytes) -> DecodedRecord:
  """Decodes one serialised record, checking every field of the format.

  Raises:
    RecordError: the message (a phrase such as "image_raw has 100 bytes but
      height*width*depth = 49152") says what is wrong.
  """
  try:
    example = tf.train.Example.FromString(record)
  except Exception as e:  # protobuf's DecodeError has no stable import path
    raise RecordError(f"is not a tf.train.Example ({e})") from None
  fmap = example.features.feature
  if IMAGE_RAW not in fmap:
    raise RecordError(f"has no '{IMAGE_RAW}' feature")
  raws = fmap[IMAGE_RAW].bytes_list.value
  if len(raws) != 1:
    raise RecordError(f"'{IMAGE_RAW}' should hold one bytes value, holds "
                      f"{len(raws)}")
  label = _int_feature(fmap, LABEL)
  h, w, d = (_int_feature(fmap, k) for k in (HEIGHT, WIDTH, DEPTH))
  if d != 3:
    raise RecordError(f"has depth {d}; the format stores RGB (depth 3)")
  if h <= 0 or w <= 0:
    raise RecordError(f"has size {h}x{w}")
  raw = raws[0]
  if len(raw) != h * w * d:
    raise RecordError(f"'{IMAGE_RAW}' has {len(raw)} bytes but "
                      f"height*width*depth = {h}*{w}*{d} = {h * w * d}")
  if label < 0:
    raise RecordError(f"has negative label {label}")
  image = np.frombuffer(raw, np.uint8).reshape(h, w, d)
  return DecodedRecord(image=image, label=label)


def read_header(path: str) -> Tuple[int, int, int]:
  """(height, width, depth) of the first record of a TFRecord file (any gfile path).

  Raises:
    RecordError: the file has no records or its first record lacks the fields.
  """
  for record in tf.data.TFRecordDataset(path).take(1):
    h = tf.io.parse_single_example(record, HEADER_FEATURES)
    return int(h[HEIGHT]), int(h[WIDTH]), int(h[DEPTH])
  raise RecordError("has no records")


def to_float(images_uint8: tf.Tensor) -> tf.Tensor:
  """uint8 -> float32 in [-1, 1], the original's `x * (2/255) - 1`."""
  return tf.cast(images_uint8, tf.float32) * (2.0 / 255.0) - 1.0


def to_uint8(images: tf.Tensor) -> tf.Tensor:
  """float in [-1, 1] -> uint8 by round((x + 1) * 255 / 2): inverts to_float exactly."""
  x = tf.round((tf.cast(images, tf.float32) + 1.0) * 127.5)
  return tf.cast(tf.clip_by_value(x, 0.0, 255.0), tf.uint8)


def parse_batch(serialized: tf.Tensor):
  """Parses a batch [B] of serialised records: (image_raw string [B], label int64 [B])."""
  f = tf.io.parse_example(serialized, BATCH_FEATURES)
  return f[IMAGE_RAW], f[LABEL]
