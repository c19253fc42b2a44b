"""Helpers for the data tests: tiny image files and record files built in tmp dirs."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image

from sagan_tf.config import Config
from tfrecords_tools import convert_common


def tiny_config(**overrides) -> Config:
  """A small config for data tests (32x32, 10 classes, batch 8)."""
  base = dict(image_size=32, num_classes=10, batch_size=8, eval_batch_size=8,
              shuffle_buffer=64, seed=0, dataset="shapes", num_samples=40)
  base.update(overrides)
  return dataclasses.replace(Config.preset("demo"), **base)


def random_image(rng: np.random.Generator, h: int, w: int, c: int = 3) -> np.ndarray:
  """Smooth-ish random uint8 image [h, w, c] (JPEG-friendly)."""
  small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), c)).astype(np.uint8)
  img = Image.fromarray(small[..., 0] if c == 1 else small)
  return np.asarray(img.resize((w, h), Image.BILINEAR))


def save(array: np.ndarray, path: str, fmt: str, mode: str = None) -> str:
  """Saves `array` with PIL in `fmt` (the file name may say something else)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  img = Image.fromarray(array)
  if mode:
    img = img.convert(mode)
  img.save(path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
  return path


def make_class_tree(root: str, seed: int = 0) -> dict:
  """A tiny class-per-folder tree with the awkward files ImageNet has.

  Classes (sorted): a_cats (RGB JPEG, greyscale JPEG, RGBA PNG),
  b_dogs (CMYK JPEG, PNG named .JPEG, 16-bit greyscale PNG, an unreadable
  file), c_birds (RGB PNG, palette PNG).

  Returns:
    {"good": [(path, label)], "bad": [path], "classes": [...]}.
  """
  rng = np.random.default_rng(seed)
  good: List[Tuple[str, int]] = []
  a, b, c = (os.path.join(root, n) for n in ("a_cats", "b_dogs", "c_birds"))
  good.append((save(random_image(rng, 48, 64), f"{a}/rgb.jpg", "JPEG"), 0))
  good.append((save(random_image(rng, 40, 30, 1), f"{a}/grey.JPEG", "JPEG"), 0))
  rgba = np.concatenate([random_image(rng, 36, 36), rng.integers(
      0, 256, (36, 36, 1), dtype=np.uint8)], axis=2)
  good.append((save(rgba, f"{a}/alpha.png", "PNG"), 0))
  good.append((save(random_image(rng, 50, 40), f"{b}/cmyk.JPEG", "JPEG", "CMYK"), 1))
  good.append((save(random_image(rng, 33, 47), f"{b}/png_named.JPEG", "PNG"), 1))
  grey16 = (random_image(rng, 40, 40, 1).astype(np.uint16) * 257)
  path16 = f"{b}/grey16.png"
  Image.fromarray(grey16).save(path16)  # mode I;16
  good.append((path16, 1))
  bad = f"{b}/broken.JPEG"
  with open(bad, "wb") as f:
    f.write(b"\xff\xd8\xff\xe0 this is not really a jpeg")
  good.append((save(random_image(rng, 32, 32), f"{c}/rgb.png", "PNG"), 2))
  good.append((save(random_image(rng, 40, 56), f"{c}/palette.png", "PNG", "P"), 2))
  return {"good": good, "bad": [bad], "classes": ["a_cats", "b_dogs", "c_birds"]}


def id_image(i: int, size: int) -> np.ndarray:
  """uint8 [size, size, 3] image whose pixels encode the integer i (0..65535)."""
  img = np.zeros((size, size, 3), np.uint8)
  img[..., 0] = i % 256
  img[..., 1] = i // 256
  img[..., 2] = np.arange(size, dtype=np.uint8)[None, :] * 3  # some structure
  return img


def image_id(image_float: np.ndarray) -> int:
  """Inverse of id_image for an image decoded to [-1, 1]."""
  u8 = np.round((image_float + 1.0) * 127.5).astype(int)
  return int(u8[0, 0, 0] + 256 * u8[0, 0, 1])


def write_records(path: str, images: Sequence[np.ndarray], labels: Sequence[int]) -> str:
  import tensorflow as tf
  from sagan_tf.data import records
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as w:
    for img, lab in zip(images, labels):
      w.write(records.encode_example(img, lab))
  return path


def write_id_shards(directory: str, num_shards: int, per_shard: int, size: int = 32,
                    num_classes: int = 10) -> List[str]:
  """Shards of id_image records: record ids 0..num_shards*per_shard-1, label = id % classes."""
  paths = []
  for s in range(num_shards):
    ids = range(s * per_shard, (s + 1) * per_shard)
    paths.append(write_records(f"{directory}/train-{s:05d}-of-{num_shards:05d}.tfrecords",
                               [id_image(i, size) for i in ids],
                               [i % num_classes for i in ids]))
  return paths


def raw_example(image_raw: bytes, label: int, h: int, w: int, d: int = 3) -> bytes:
  """A record with arbitrary (possibly inconsistent) fields."""
  import tensorflow as tf

  def i64(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

  return tf.train.Example(features=tf.train.Features(feature={
      "image_raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_raw])),
      "label": i64(label), "height": i64(h), "width": i64(w), "depth": i64(d),
  })).SerializeToString()


def make_two_class_pngs(root: str, per_class: int = 4, size: int = 24, seed: int = 0
                        ) -> List[Tuple[str, int]]:
  """root/c0, root/c1 with `per_class` random PNGs each; returns (path, label) pairs."""
  rng = np.random.default_rng(seed)
  out = []
  for c in range(2):
    for i in range(per_class):
      out.append((save(random_image(rng, size, size), f"{root}/c{c}/{i}.png", "PNG"), c))
  return out


class SlowFileItems(convert_common.FileItems):
  """convert_common.FileItems that takes `delay` seconds per image (same records).

  Defined here, not in a test, so that spawned converter workers can unpickle it.
  """

  delay = 1.0

  def iter_images(self, image_size):
    for item in super().iter_images(image_size):
      time.sleep(self.delay)
      yield item
