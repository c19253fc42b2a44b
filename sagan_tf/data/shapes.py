"""`--dataset=shapes`: the embedded, procedural, class-conditional dataset.

Ten classes that differ only by geometry (CLASS_NAMES). Each image is one
shape with a random fill colour, position, scale (radius 9-12.5 px at 32x32,
proportionally at other sizes) and rotation, on a plain background of one
random colour (rendering 3; BUILD_NOTES.md, "The shapes rendering has a
version"). Colour, position, scale and rotation are drawn independently of
the class, so only the shape's geometry tells the class (BUILD_NOTES.md,
Data: the embedded shapes dataset).

Rendering is numpy: a signed distance to each shape on a pixel grid at twice
the resolution, a one-pixel linear edge, 2x2 area averaging down to the
output size. Images are drawn deterministically from a seed; a pool is made
once per process (cached) and tf.data serves shuffled batches from it.

Splits are independent random streams of the same distribution: "train"
(training), "test" (real images for evaluation), "heldout" (e.g. to train the
evaluation classifier); `part` selects further disjoint sets of a split.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Optional, Tuple

from absl import logging
import numpy as np

from sagan_tf import image_grid
from sagan_tf.errors import UserError

NUM_CLASSES = 10
CLASS_NAMES = ("circle", "square", "triangle", "ring", "cross", "star",
               "ellipse", "pentagon", "L-shape", "heart")
SPLITS = ("train", "test", "heldout")

# Bumped whenever a seed would render other images: what was trained on the
# shapes (the cached classifier, and through its weights the cached real
# statistics) names the rendering it saw. 1: radius 6.5-10 px on a smooth
# background (gradient, blobs, optional stripes / checks / noise), contrast
# >= 0.3 (the classifier caches written before this number existed are of
# it); 2: commit a925b73's plain background, reverted (its caches may exist);
# 3: the rendering described above, contrast >= 0.35.
RENDERING_VERSION = 3

# Training pool: this many images, fewer if they would exceed the memory
# budget (large image sizes). Tests may lower it.
DEFAULT_POOL_SIZE = 20_000
POOL_MEMORY_BUDGET = 256 << 20

# Output pixels rendered per numpy pass (256 images at 32x32): large enough
# to amortise Python overhead, small enough that the temporaries stay in
# cache. The stream skips one of rendering 1's noise seeds per chunk
# (_skip_rendering1_background_draws): keep it fixed so a seed always gives
# the same images.
_CHUNK_PIXELS = 256 * 32 * 32


def _chunk_size(size: int) -> int:
  return max(1, _CHUNK_PIXELS // (size * size))

# Shape radius at 32x32, in pixels (scaled with the image size).
_RADIUS_RANGE = (9.0, 12.5)
# Minimum luminance difference between the fill and the background.
_MIN_CONTRAST = 0.35
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


# ----------------------------------------------------------- signed distances
# Each takes shape coordinates (u, v) (float32 arrays, rotated and divided by
# the radius; every shape fits in the unit disc) and returns a signed distance
# in the same units: negative inside. Outside corners they may underestimate
# the distance, which only affects the one-pixel edge ramp.

def _box(u, v, cu, cv, hu, hv):
  return np.maximum(np.abs(u - cu) - hu, np.abs(v - cv) - hv)


def _regular_polygon(u, v, sides: int, circumradius: float):
  d = None
  for k in range(sides):
    phi = 2.0 * math.pi * k / sides
    proj = u * math.cos(phi) + v * math.sin(phi)
    d = proj if d is None else np.maximum(d, proj)
  return d - circumradius * math.cos(math.pi / sides)


def _circle(u, v):
  return np.hypot(u, v) - 0.85


def _square(u, v):
  return _regular_polygon(u, v, 4, 0.95)


def _triangle(u, v):
  return _regular_polygon(u, v, 3, 1.0)


def _ring(u, v):
  return np.abs(np.hypot(u, v) - 0.7) - 0.21


def _cross(u, v):
  return np.minimum(_box(u, v, 0, 0, 0.95, 0.3), _box(u, v, 0, 0, 0.3, 0.95))


def _star(u, v, points: int = 5, outer: float = 1.0, inner: float = 0.42):
  # Fold the plane into one half-sector [0, pi/points]: there the boundary is
  # the segment from the tip (outer, 0) to the inner vertex.
  half = math.pi / points
  a = np.abs(np.mod(np.arctan2(v, u), 2 * half) - half)
  a = half - a  # 0 at a tip, half at an inner vertex
  r = np.hypot(u, v)
  qx, qy = r * np.cos(a), r * np.sin(a)
  bx, by = inner * math.cos(half), inner * math.sin(half)
  nx, ny = by, outer - bx  # normal of edge tip->inner, pointing outwards
  norm = math.hypot(nx, ny)
  return ((qx - outer) * nx + qy * ny) / norm


def _ellipse(u, v, a: float = 0.95, b: float = 0.5):
  k = np.sqrt((u / a) ** 2 + (v / b) ** 2)
  grad = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2) / np.maximum(k, 1e-6)
  return (k - 1.0) / np.maximum(grad, 1e-6)


def _pentagon(u, v):
  return _regular_polygon(u, v, 5, 0.92)


def _l_shape(u, v):
  upright = _box(u, v, -0.38, 0.0, 0.24, 0.78)
  foot = _box(u, v, 0.04, 0.54, 0.66, 0.24)
  return np.minimum(upright, foot)


def _heart(u, v, scale: float = 0.71):
  # The classic heart curve (x^2 + y^2 - 1)^3 = x^2 y^3 (y up), centred and
  # scaled into the unit disc; distance ~ f / |grad f| near the boundary.
  x = u / scale
  y = 0.118 - v / scale
  a = x * x + y * y - 1.0
  f = a**3 - x * x * y**3
  fx = 6.0 * x * a * a - 2.0 * x * y**3
  fy = 6.0 * y * a * a - 3.0 * x * x * y * y
  return f / np.maximum(np.hypot(fx, fy), 1e-6) * scale


_SDFS = (_circle, _square, _triangle, _ring, _cross, _star, _ellipse,
         _pentagon, _l_shape, _heart)
assert len(_SDFS) == NUM_CLASSES == len(CLASS_NAMES)


# ----------------------------------------------------------------- rendering
def _skip_rendering1_background_draws(rng: np.random.Generator, n: int, size: int):
  """Advances rng past rendering 1's gradient, blob, texture and noise draws.

  Why: the fill colours that follow keep their place in the stream, so a
  seed's images in renderings 1 and 3 differ by background and radius only,
  and the measured demo runs of rendering 3 (BUILD_NOTES) used this stream.
  """
  chunks = (n + _chunk_size(size) - 1) // _chunk_size(size)
  rng.uniform(-0.25, 0.25, (n, 3))
  rng.uniform(0.0, 2 * math.pi, n)
  rng.normal(0.0, 0.07, (n, 3, 3, 3))
  rng.choice(4, n, p=[0.4, 0.2, 0.2, 0.2])
  rng.uniform(0.05, 0.12, n)
  rng.uniform(0.4, 1.0, (n, 3))
  rng.choice([-1.0, 1.0], (n, 1))
  for low, high in ((0.12, 0.3), (0.0, math.pi), (0.0, 2 * math.pi)):
    rng.uniform(low, high, n)
  rng.integers(0, 2**63 - 1, chunks)


def _draw_params(labels: np.ndarray, rng: np.random.Generator, size: int):
  """Every random quantity of every image, drawn in a fixed order."""
  n = len(labels)
  scale = size / 32.0
  p = {}
  p["radius"] = rng.uniform(*_RADIUS_RANGE, n) * scale
  p["angle"] = rng.uniform(0.0, 2 * math.pi, n)
  margin = p["radius"] + 0.5
  p["cx"] = margin + rng.uniform(0, 1, n) * (size - 2 * margin)
  p["cy"] = margin + rng.uniform(0, 1, n) * (size - 2 * margin)
  p["background"] = rng.uniform(0.0, 1.0, (n, 3))
  _skip_rendering1_background_draws(rng, n, size)
  # Fill colour: uniform RGB, redrawn until it stands out from the
  # background's luminance (never depends on the class).
  bg_luma = p["background"] @ _LUMA
  fg = rng.uniform(0.0, 1.0, (n, 3))
  for _ in range(32):
    bad = np.abs(fg @ _LUMA - bg_luma) < _MIN_CONTRAST
    if not bad.any():
      break
    fg[bad] = rng.uniform(0.0, 1.0, (int(bad.sum()), 3))
  bad = np.abs(fg @ _LUMA - bg_luma) < _MIN_CONTRAST
  fg[bad] = np.where(bg_luma[bad, None] > 0.5, fg[bad] * 0.25, 0.75 + fg[bad] * 0.25)
  p["fg"] = fg
  return p


def _coverage(labels, p, sl: slice, size: int) -> np.ndarray:
  """Shape coverage in [0, 1], float32 [n, size, size], rendered at 2x."""
  hi = 2 * size
  grid = ((np.arange(hi, dtype=np.float32) + 0.5) / 2.0)
  out = np.empty((sl.stop - sl.start, hi, hi), np.float32)
  labels = labels[sl]
  for c in np.unique(labels):
    idx = np.nonzero(labels == c)[0]
    r = p["radius"][sl][idx].astype(np.float32)[:, None, None]
    ang = p["angle"][sl][idx]
    cos = np.cos(ang).astype(np.float32)[:, None, None]
    sin = np.sin(ang).astype(np.float32)[:, None, None]
    dx = grid[None, None, :] - p["cx"][sl][idx].astype(np.float32)[:, None, None]
    dy = grid[None, :, None] - p["cy"][sl][idx].astype(np.float32)[:, None, None]
    u = (cos * dx + sin * dy) / r
    v = (cos * dy - sin * dx) / r
    dist_hi_px = _SDFS[c](u, v) * (2.0 * r)
    out[idx] = np.clip(0.5 - dist_hi_px, 0.0, 1.0)
  # 2x2 area average down to the output size.
  return 0.25 * ((out[:, 0::2, 0::2] + out[:, 1::2, 0::2])
                 + (out[:, 0::2, 1::2] + out[:, 1::2, 1::2]))


def render_shapes(labels: np.ndarray, rng: np.random.Generator, size: int = 32,
                  *, return_masks: bool = False):
  """Draws one image per label.

  Args:
    labels: int [N], classes in [0, NUM_CLASSES).
    rng: the source of every random choice (same state -> same images).
    size: output height = width (any size >= 16; powers of two in practice).
    return_masks: also return each shape's coverage.
  Returns:
    images uint8 [N, size, size, 3]; with return_masks, also coverage float32
    [N, size, size] in [0, 1] (the fraction of each pixel inside the shape).
  """
  labels = np.asarray(labels, np.int64)
  if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
    raise ValueError(f"shape labels must lie in [0, {NUM_CLASSES}), got "
                     f"{labels.min()}..{labels.max()}")
  if size < 16:
    raise ValueError(f"shapes need size >= 16, got {size}")
  n = len(labels)
  p = _draw_params(labels, rng, size)
  images = np.empty((n, size, size, 3), np.uint8)
  masks = np.empty((n, size, size), np.float32) if return_masks else None
  chunk = _chunk_size(size)
  for start in range(0, n, chunk):
    sl = slice(start, min(n, start + chunk))
    cov = _coverage(labels, p, sl, size)
    bg = np.asarray(p["background"][sl], np.float32)[:, :, None, None]  # [n, 3, 1, 1]
    fg = np.asarray(p["fg"][sl], np.float32)[:, :, None, None]
    img = bg + cov[:, None] * (fg - bg)  # [n, 3, size, size]
    images[sl] = np.round(img * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)
    if return_masks:
      masks[sl] = cov
  return (images, masks) if return_masks else images


# --------------------------------------------------------------------- pools
def _split_id(split: str) -> int:
  if split not in SPLITS:
    raise UserError(f"The shapes dataset has no split {split!r}; choose one of "
                    f"{', '.join(SPLITS)}.")
  return SPLITS.index(split)


def pool_rng(seed: int, split: str = "train", part: int = 0) -> np.random.Generator:
  """The random stream of one (seed, split, part): streams never overlap."""
  return np.random.default_rng(
      np.random.SeedSequence(entropy=int(seed), spawn_key=(_split_id(split), int(part))))


@functools.lru_cache(maxsize=6)
def _cached_pool(n, size, seed, split, part, num_classes):
  t0 = time.perf_counter()
  rng = pool_rng(seed, split, part)
  labels = rng.permutation(np.resize(np.arange(num_classes), n)).astype(np.int32)
  images = render_shapes(labels, rng, size)
  images.setflags(write=False)
  labels.setflags(write=False)
  dt = time.perf_counter() - t0
  logging.info("shapes: rendered the %s pool (%d images %dx%d, seed %d, part %d) "
               "in %.1f s (%.0f images/s).", split, n, size, size, seed, part, dt,
               n / max(dt, 1e-9))
  return images, labels


def shapes_pool(n: int, size: int = 32, seed: int = 0, *, split: str = "train",
                part: int = 0, num_classes: int = NUM_CLASSES
                ) -> Tuple[np.ndarray, np.ndarray]:
  """A deterministic pool of shapes, made once per process (cached).

  Args:
    n: number of images.
    size: image height = width.
    seed: the data seed (cfg.seed).
    split: "train", "test" or "heldout": independent streams, so pools of
      different splits (or parts) never share an image.
    part: index of a further disjoint set within a split (e.g. two real sets).
    num_classes: use classes 0..num_classes-1 of the ten.
  Returns:
    images uint8 [n, size, size, 3] (read-only), labels int32 [n] (read-only),
    classes balanced (counts differ by at most one), in random order.
  """
  if not 1 <= num_classes <= NUM_CLASSES:
    raise UserError(f"The shapes dataset has {NUM_CLASSES} classes; "
                    f"--num_classes={num_classes} must be between 1 and {NUM_CLASSES}.")
  return _cached_pool(int(n), int(size), int(seed), split, int(part), int(num_classes))


def train_pool_size(size: int) -> int:
  """Training pool size at this image size (DEFAULT_POOL_SIZE within the memory budget)."""
  return max(1000, min(DEFAULT_POOL_SIZE, POOL_MEMORY_BUDGET // (size * size * 3)))


def class_grid(size: int = 32, per_class: int = 10, seed: int = 0) -> np.ndarray:
  """uint8 [NUM_CLASSES * per_class, size, size, 3]: per_class images of class 0, then 1, ..."""
  labels = np.repeat(np.arange(NUM_CLASSES), per_class)
  return render_shapes(labels, pool_rng(seed, "heldout", 1000), size)


def write_shapes_grid(path: str, size: int = 32, per_class: int = 10, seed: int = 0,
                      scale: int = 4) -> str:
  """Saves a PNG with one row per class (nearest-upscaled by `scale`); returns path."""
  return image_grid.save_image_grid(class_grid(size, per_class, seed), path,
                                    ncols=per_class, scale=scale)


def make_shapes_dataset(
    *,
    image_size: int,
    num_classes: int,
    batch_size: int,
    training: bool,
    seed: int,
    shuffle_seed: Optional[int] = None,
    split: str = "train",
    part: int = 0,
    num_images: Optional[int] = None,
    input_context=None,
):
  """Batches (images float32 [B, S, S, 3] in [-1, 1], labels int32 [B]) from a pool.

  split "train" serves the training pool (train_pool_size images; with
  training=False and num_images, the slice `part`); other splits serve a
  pool of num_images drawn from their own stream. Training serves a full
  reshuffle of the pool each epoch (an index shuffle: 8 bytes per image, so
  --shuffle_buffer does not apply). The pool is the same in every input
  pipeline (seeded by `seed`); pipelines take disjoint index shards of it.
  """
  # The renderer is numpy only; TensorFlow loads for the tf.data wrapper alone.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from sagan_tf.data import records  # pylint: disable=g-import-not-at-top

  if split == "train":
    # Always the training pool itself; evaluation may ask for a slice of it
    # (part k = images k*num_images .. (k+1)*num_images - 1).
    images, labels = shapes_pool(train_pool_size(image_size), image_size, seed,
                                 split="train", num_classes=num_classes)
    if not training and num_images is not None:
      lo = part * num_images
      images, labels = images[lo:lo + num_images], labels[lo:lo + num_images]
      if len(images) < num_images:
        logging.warning("shapes: the training pool has only %d images from index "
                        "%d (asked for %d).", len(images), lo, num_images)
  else:
    images, labels = shapes_pool(num_images or train_pool_size(image_size), image_size,
                                 seed, split=split, part=part, num_classes=num_classes)
  n = len(images)
  images_t = tf.constant(images)
  labels_t = tf.constant(labels)
  idx = tf.data.Dataset.range(n)
  if input_context and input_context.num_input_pipelines > 1:
    idx = idx.shard(input_context.num_input_pipelines,
                    input_context.input_pipeline_id)
  if training:
    local = -(-n // (input_context.num_input_pipelines if input_context else 1))
    idx = idx.shuffle(local, seed=seed if shuffle_seed is None else shuffle_seed,
                      reshuffle_each_iteration=True).repeat()
  idx = idx.batch(batch_size, drop_remainder=training)

  def gather(i):
    return records.to_float(tf.gather(images_t, i)), tf.gather(labels_t, i)

  return idx.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
      tf.data.AUTOTUNE)


if __name__ == "__main__":
  # python -m sagan_tf.data.shapes OUT.png [SIZE]: write the class grid.
  import sys
  out = sys.argv[1] if len(sys.argv) > 1 else "docs/shapes_grid.png"
  sz = int(sys.argv[2]) if len(sys.argv) > 2 else 32
  print(write_shapes_grid(out, size=sz))
