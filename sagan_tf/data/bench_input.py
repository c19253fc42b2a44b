"""Input-pipeline throughput: how many images/s the tfrecords pipeline delivers.

`input_images_per_second(cfg)` writes a temporary set of random 128x128
records (2,000 images in 8 shards) unless cfg.dataset names existing
tfrecords, builds `make_dataset(cfg)` exactly as training does, warms it up,
and counts images over a fixed wall-clock time. Called by
`./run.sh bench --what=input`.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from sagan_tf.data import pipeline
from sagan_tf.data import records

BENCH_IMAGE_SIZE = 128
BENCH_IMAGES = 2000
BENCH_SHARDS = 8


def write_random_records(directory: str, *, num_images: int = BENCH_IMAGES,
                         num_shards: int = BENCH_SHARDS,
                         image_size: int = BENCH_IMAGE_SIZE, num_classes: int = 1000,
                         seed: int = 0) -> str:
  """Writes random-pixel records; returns their glob."""
  rng = np.random.default_rng(seed)
  tf.io.gfile.makedirs(directory)
  per_shard = np.array_split(np.arange(num_images), num_shards)
  for k, ids in enumerate(per_shard):
    path = f"{directory}/bench-{k:05d}-of-{num_shards:05d}.tfrecords"
    with tf.io.TFRecordWriter(path) as w:
      for _ in ids:
        image = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        w.write(records.encode_example(image, int(rng.integers(num_classes))))
  return f"{directory}/bench-*.tfrecords"


def input_images_per_second(cfg, seconds: float = 10.0,
                            warmup_batches: Optional[int] = None) -> float:
  """Images per second out of make_dataset(cfg) (training mode), after warm-up.

  Uses cfg.dataset when it is tfrecords:GLOB and GLOB matches files, else temporary random records
  at 128x128 (cfg.image_size and num_classes are set to match them).
  Batch = cfg.batch_size; shuffle buffer = min(cfg.shuffle_buffer, 10,000) so
  filling it does not dominate a short run.
  """
  tmp = None
  try:
    spec = pipeline.parse_dataset_spec(cfg.dataset)
    if spec.kind == "tfrecords" and tf.io.gfile.glob(spec.arg):
      bench_cfg = cfg
    else:
      tmp = tempfile.mkdtemp(prefix="sagan_bench_input_")
      glob = write_random_records(tmp)
      bench_cfg = dataclasses.replace(
          cfg, dataset=f"tfrecords:{glob}", image_size=BENCH_IMAGE_SIZE,
          num_classes=1000)
    bench_cfg = dataclasses.replace(
        bench_cfg, shuffle_buffer=min(bench_cfg.shuffle_buffer, 10_000))
    ds = pipeline.make_dataset(bench_cfg)
    it = iter(ds)
    batch = bench_cfg.batch_size
    warmup = warmup_batches if warmup_batches is not None else max(
        4, 2 * bench_cfg.shuffle_buffer // batch)
    # Warm-up fills the shuffle buffer and lets autotune settle.
    for _ in range(min(warmup, 200)):
      next(it)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
      images, _ = next(it)
      n += int(images.shape[0])
    rate = n / (time.perf_counter() - start)
    logging.info("input pipeline: %.0f images/s (%dx%d, batch %d)", rate,
                 bench_cfg.image_size, bench_cfg.image_size, batch)
    return rate
  finally:
    if tmp:
      shutil.rmtree(tmp, ignore_errors=True)
