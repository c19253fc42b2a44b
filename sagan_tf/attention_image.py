"""Attention maps as pictures (numpy only): keys to pixels, colour ramp, panels.

The one rendering of self-attention probabilities, shared by `./run.sh
attention` (tools/attention_maps.py, which documents the pictures), the
training loop's TensorBoard images (train/summaries.py) and the maps training
writes of its final generator (`write_pngs`).

Keys to pixels (`attention_map`): the "paper" variant has one key per
position of the layer's H x W grid; the "original" variant's keys are the
2x2-max-pooled grid (row-major over H/2 x W/2), and key (i, j) covers the
positions (2i..2i+1, 2j..2j+1), so its probability is shared equally by
those four positions (the map still sums to 1). A query pixel (y, x) is the
layer position (y * H // image_size, x * W // image_size).
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from sagan_tf import image_grid as grid_lib
from sagan_tf.errors import UserError

# Inferno-like ramp: (position, RGB) control points, linear in between.
_RAMP = np.array([
    (0.00, 0, 0, 4), (0.15, 40, 11, 84), (0.30, 101, 21, 110), (0.45, 159, 42, 99),
    (0.60, 212, 72, 66), (0.75, 245, 125, 21), (0.88, 250, 193, 39), (1.00, 252, 255, 164)],
    np.float32)
# Marker colours, one per query (cycled): cyan, lime, white, yellow, blue; each
# is drawn with a black outline so it shows on the ramp and on any image.
_MARKERS = np.array([(0, 255, 255), (0, 255, 0), (255, 255, 255), (255, 255, 0),
                     (40, 110, 255)], np.uint8)


def query_index(y: int, x: int, image_size: int, grid: int) -> int:
  """Row-major index of the layer position (grid x grid) holding image pixel (y, x)."""
  return (y * grid // image_size) * grid + (x * grid // image_size)


def attention_map(probs: np.ndarray, grid: int) -> np.ndarray:
  """One query's probabilities over keys -> [grid, grid] distribution over positions.

  Args:
    probs: [Nk]; Nk = grid * grid ("paper": one key per position) or
      (grid / 2) ** 2 ("original": keys on the 2x2-pooled grid, row-major).
    grid: the layer's spatial size (H = W).
  Returns:
    float32 [grid, grid]; a pooled key's probability is split equally over
    the 2 x 2 positions it covers, so the sum is unchanged.
  """
  probs = np.asarray(probs, np.float32).reshape(-1)
  if probs.size == grid * grid:
    return probs.reshape(grid, grid)
  half = grid // 2
  if grid % 2 == 0 and probs.size == half * half:
    pooled = probs.reshape(half, half)
    return np.repeat(np.repeat(pooled, 2, axis=0), 2, axis=1) / 4.0
  raise ValueError(f"{probs.size} attention keys fit neither a {grid}x{grid} grid nor its "
                   f"2x2-pooled {half}x{half} grid")


def upscale(a: np.ndarray, factor: int) -> np.ndarray:
  """Nearest-neighbour upscaling of the first two axes by an integer factor."""
  return np.repeat(np.repeat(a, factor, axis=0), factor, axis=1) if factor > 1 else a


def colormap(values: np.ndarray) -> np.ndarray:
  """values in [0, 1] [...] -> uint8 RGB [..., 3] on the inferno-like ramp."""
  v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
  rgb = [np.interp(v, _RAMP[:, 0], _RAMP[:, c]) for c in (1, 2, 3)]
  return np.round(np.stack(rgb, axis=-1)).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.65) -> np.ndarray:
  """uint8 image [H,W,3] in grey blended with colormap(heat / max) [H,W] -> uint8."""
  grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  peak = float(heat.max())
  colour = colormap(heat / peak if peak > 0 else heat).astype(np.float32)
  out = (1.0 - alpha) * grey[..., None] + alpha * colour
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def mark(panel: np.ndarray, y: int, x: int, colour, arm: int) -> np.ndarray:
  """Draws a plus sign (colour, 1 px black outline) centred at (y, x) in place."""
  h, w, _ = panel.shape
  for c, grow in ((np.zeros(3, np.uint8), 1), (np.asarray(colour, np.uint8), 0)):
    for dy, dx in ((1, 0), (0, 1)):
      for s in range(-arm - grow, arm + grow + 1):
        for t in range(-grow, grow + 1):
          yy, xx = y + s * dy + t * dx, x + s * dx + t * dy
          if 0 <= yy < h and 0 <= xx < w:
            panel[yy, xx] = c
  return panel


def parse_queries(text: str, image_size: int) -> List[Tuple[int, int]]:
  """'y,x;y,x' (pixels) -> [(y, x)]; empty -> a default spread of 5 points."""
  if not text.strip():
    q, c = image_size // 4, image_size // 2
    return [(c, c), (q, q), (q, image_size - 1 - q), (image_size - 1 - q, q),
            (image_size - 1 - q, image_size - 1 - q)]
  points = []
  for part in text.split(";"):
    if not part.strip():
      continue
    try:
      y, x = (int(v) for v in part.split(","))
    except ValueError as e:
      raise UserError(f"--queries={text!r}: {part!r} is not 'y,x' in pixels; write e.g. "
                      "--queries='8,8;16,24'.") from e
    if not (0 <= y < image_size and 0 <= x < image_size):
      raise UserError(f"--queries has ({y},{x}), outside the {image_size}x{image_size} image.")
    points.append((y, x))
  if not points:
    raise UserError(f"--queries={text!r} has no point; write e.g. --queries='8,8;16,24'.")
  return points


def image_panels(image: np.ndarray, query_probs: np.ndarray, queries, grid: int,
                 factor: int) -> List[np.ndarray]:
  """[marked image, one overlay per query] as uint8 panels of size S * factor.

  Args:
    image: uint8 [S, S, 3].
    query_probs: [num_queries, Nk] probabilities of each query over the keys.
    queries: [(y, x)] in image pixels.
    grid: the attention layer's spatial size.
    factor: integer upscaling of the panels.
  """
  size = image.shape[0]
  big = upscale(image, factor)
  arm = max(2, factor + 1)
  centre = lambda v: v * factor + factor // 2
  first = big.copy()
  panels = [first]
  for q, ((y, x), probs) in enumerate(zip(queries, query_probs)):
    colour = _MARKERS[q % len(_MARKERS)]
    heat = upscale(attention_map(probs, grid), size // grid)
    panel = overlay(big, upscale(heat, factor))
    panels.append(mark(panel, centre(y), centre(x), colour, arm))
    mark(first, centre(y), centre(x), colour, arm)
  return panels


def write_pngs(images: np.ndarray, query_probs: Mapping[str, Tuple[int, np.ndarray]],
               labels: Sequence[int], queries, output_dir: str, per_class: int = 1,
               target_pixels: int = 128) -> Dict[str, List[str]]:
  """Per attention layer, one PNG per image and a grid.png of all of them.

  Args:
    images: uint8 [B, S, S, 3] generated images.
    query_probs: {layer: (grid, [B, len(queries), Nk])}.
    labels: the B images' classes (file names class<cccc>_<ii>.png, ii = the
      image's index within its class when each class has `per_class` images
      in a row).
    queries: [(y, x)] image pixels.
    output_dir: files go to output_dir/<layer, "/" -> "_">/.
    target_pixels: panels are upscaled (nearest) to about this size.
  Returns:
    {layer: [paths]}, grid.png last.
  """
  factor = max(1, target_pixels // images.shape[1])
  written = {}
  for name, (grid, probs) in query_probs.items():
    folder = os.path.join(output_dir, name.replace("/", "_"))
    paths, all_panels = [], []
    for b in range(len(labels)):
      panels = image_panels(images[b], probs[b], queries, int(grid), factor)
      all_panels += panels
      fname = f"class{int(labels[b]):04d}_{b % per_class:02d}.png"
      paths.append(grid_lib.save_image_grid(np.stack(panels), os.path.join(folder, fname),
                                            ncols=len(panels), pad=2))
    paths.append(grid_lib.save_image_grid(np.stack(all_panels), os.path.join(folder, "grid.png"),
                                          ncols=len(queries) + 1, pad=2))
    written[name] = paths
  return written
