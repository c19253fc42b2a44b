r"""Converter throughput per worker process on ILSVRC-sized JPEGs.

  python -m tfrecords_tools.bench_convert [--num_images=300 --image_size=128]

Writes synthetic 500x375 JPEGs (quality 90, photo-like: smooth colour
fields plus fine detail) to a temporary folder and converts them in-process
(one worker), with and without JPEG draft decoding. Prints images/s.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from absl import app, flags
import numpy as np
from PIL import Image

from tfrecords_tools import convert_common


def write_jpegs(directory: str, num_images: int, seed: int = 0):
  """num_images 500x375 JPEGs in two class folders; returns (path, label) pairs."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:375, :500]
  out = []
  for i in range(num_images):
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((500, 375), Image.BICUBIC), np.float32)
    detail = 12 * np.sin(xx / rng.uniform(1.5, 4) + yy / rng.uniform(2, 6))
    img = np.clip(base + detail[..., None] + rng.normal(0, 4, base.shape), 0, 255)
    os.makedirs(f"{directory}/c{i % 2}", exist_ok=True)
    path = f"{directory}/c{i % 2}/{i}.JPEG"
    Image.fromarray(img.astype(np.uint8)).save(path, quality=90)
    out.append((path, i % 2))
  return out


def jpeg_images_per_second(num_images: int = 300, image_size: int = 128,
                           jpeg_draft: bool = True) -> float:
  """Images/s of convert() with one worker (decode, preprocess, encode, write)."""
  import tensorflow  # noqa: F401  (imported before timing: the writers use it)
  tmp = tempfile.mkdtemp(prefix="sagan_bench_convert_")
  try:
    items = write_jpegs(f"{tmp}/in", num_images)
    report = convert_common.convert(items, f"{tmp}/out", image_size=image_size,
                                    num_shards=4, num_workers=1, jpeg_draft=jpeg_draft,
                                    log_every_secs=1e9)
    return report.written / report.seconds
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def main(argv):
  del argv
  for draft in (True, False):
    rate = jpeg_images_per_second(flags.FLAGS.num_images, flags.FLAGS.image_size, draft)
    print(f"jpeg_draft={draft}: {rate:.0f} images/s per worker "
          f"(500x375 JPEG -> {flags.FLAGS.image_size}x{flags.FLAGS.image_size} record)")
  return 0


if __name__ == "__main__":
  flags.DEFINE_integer("num_images", 300, "Synthetic JPEGs to convert.")
  flags.DEFINE_integer("image_size", 128, "Output size.")
  app.run(main)
