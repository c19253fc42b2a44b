"""Image grids as arrays and PNG files (local or gs://, through tf.io.gfile).

numpy only until a PNG is written (TensorFlow is imported there).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np


def to_rgb_uint8(images) -> np.ndarray:
  """numpy; uint8 images unchanged; float images in [-1, 1] -> round((x + 1) * 255 / 2).

  Args:
    images: [N, H, W, C] (C = 1 or 3) uint8, or float in [-1, 1] (numpy or tf).
  Returns:
    uint8 [N, H, W, 3] (one channel is repeated).
  """
  x = np.asarray(images)
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"expected images [N, H, W, 1 or 3], got shape {x.shape}")
  if x.dtype != np.uint8:
    x = np.clip(np.round((x.astype(np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return x


def image_grid(images, ncols: Optional[int] = None, *, pad: int = 1,
               pad_value: int = 255, scale: int = 1) -> np.ndarray:
  """Tiles images row by row into one image.

  Args:
    images: [N, H, W, C] uint8, or float in [-1, 1] (see to_rgb_uint8).
    ncols: images per row (default: ceil(sqrt(N))). Unfilled cells are pad_value.
    pad: pixels between and around images (before scaling).
    pad_value: grey level of the padding, 0..255.
    scale: integer nearest-neighbour upscaling of the result (to see pixels).
  Returns:
    uint8 [rows * (H + pad) + pad, ncols * (W + pad) + pad, 3] times scale.
  """
  x = to_rgb_uint8(images)
  n, h, w, _ = x.shape
  if n == 0:
    raise ValueError("image_grid needs at least one image")
  ncols = int(ncols or math.ceil(math.sqrt(n)))
  rows = -(-n // ncols)
  grid = np.full((rows * (h + pad) + pad, ncols * (w + pad) + pad, 3), pad_value,
                 np.uint8)
  for i in range(n):
    r, c = divmod(i, ncols)
    top, left = pad + r * (h + pad), pad + c * (w + pad)
    grid[top:top + h, left:left + w] = x[i]
  if scale > 1:
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
  return grid


def save_image_grid(images, path: str, ncols: Optional[int] = None, *, pad: int = 1,
                    pad_value: int = 255, scale: int = 1) -> str:
  """Writes image_grid(...) as a PNG to `path` (parent folders created); returns path."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # numpy-only callers skip it
  grid = image_grid(images, ncols, pad=pad, pad_value=pad_value, scale=scale)
  parent = path.rsplit("/", 1)[0] if "/" in path else ""
  if parent and not tf.io.gfile.exists(parent):
    tf.io.gfile.makedirs(parent)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(tf.io.encode_png(grid).numpy())
  return path
