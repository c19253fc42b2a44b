"""`./run.sh attention --model_dir=DIR`: where self-attention looks (paper Fig. 1 / 5).

For generated images of the classes in --labels (default: up to 4 spread
over the range), --num_images per class, and query points --queries
('y,x;y,x' in image pixels; default: the centre and the four points at a
quarter of the size from each corner), every self-attention layer of the
generator gets, per image, one PNG:

  [image with all query points marked | one panel per query]

where a panel is the image in grey with that query's attention
probabilities over the keys drawn on top in an inferno-like colour ramp
(normalised to the panel's maximum) and the query point marked in its own
colour. Files: OUTPUT/<layer>/class<c>_<i>.png and OUTPUT/<layer>/grid.png
(one row per image), OUTPUT = --output_dir or DIR/attention. Small images
are upscaled with nearest neighbour to about 128 px.

Keys to pixels (`attention_map`): the "paper" variant has one key per
position of the layer's H x W grid; the "original" variant's keys are the
2x2-max-pooled grid (row-major over H/2 x W/2), and key (i, j) covers the
positions (2i..2i+1, 2j..2j+1), so its probability is shared equally by
those four positions (the map still sums to 1). The position map is then
upscaled to the image with nearest neighbour (each position covers
image_size / H pixels per side). A query pixel (y, x) is the layer position
(y * H // image_size, x * W // image_size).
"""

from __future__ import annotations

import os
from typing import Dict, List, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from sagan_tf import image_grid as grid_lib
from sagan_tf import run_dir
from sagan_tf.errors import UserError
from sagan_tf.export import sample_latents
from sagan_tf.tools import run_generator

OUTPUT_SUBDIR = "attention"
DEFAULT_CLASSES = 4
TARGET_PIXELS = 128
BATCH = 8

# Inferno-like ramp: (position, RGB) control points, linear in between.
_RAMP = np.array([
    (0.00, 0, 0, 4), (0.15, 40, 11, 84), (0.30, 101, 21, 110), (0.45, 159, 42, 99),
    (0.60, 212, 72, 66), (0.75, 245, 125, 21), (0.88, 250, 193, 39), (1.00, 252, 255, 164)],
    np.float32)
# Marker colours, one per query (cycled): cyan, lime, white, yellow, blue; each
# is drawn with a black outline so it shows on the ramp and on any image.
_MARKERS = np.array([(0, 255, 255), (0, 255, 0), (255, 255, 255), (255, 255, 0),
                     (40, 110, 255)], np.uint8)


# ------------------------------------------------------------ pure mapping
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


# ------------------------------------------------------------ the tool
def _attention_rows(generator, z: np.ndarray, labels: np.ndarray, queries,
                    image_size: int):
  """(uint8 images [B,S,S,3], {layer: (grid, [B, num_queries, Nk])}) in batches."""
  images, rows = [], {}
  for i in range(0, len(labels), BATCH):
    x, attn = generator(tf.constant(z[i:i + BATCH]), tf.constant(labels[i:i + BATCH], tf.int32),
                        training=False, update_u=False, return_attention=True)
    images.append(grid_lib.to_rgb_uint8(x.numpy()))
    for name, probs in attn.items():
      grid = int(round(np.sqrt(probs.shape[1])))
      idx = [query_index(y, xx, image_size, grid) for y, xx in queries]
      rows.setdefault(name, (grid, []))[1].append(tf.gather(probs, idx, axis=1).numpy())
  return np.concatenate(images), {k: (g, np.concatenate(v)) for k, (g, v) in rows.items()}


def write_attention_maps(generator, cfg, output_dir: str) -> Dict[str, List[str]]:
  """The PNGs of the module docstring for every attention layer; {layer: paths}."""
  if not generator.attention_layers():
    raise UserError("This run's generator has no self-attention layer (--g_attention_res "
                    "was empty), so there is nothing to draw.")
  size = cfg.image_size
  labels = run_generator.choose_labels(cfg.labels, cfg.num_classes, DEFAULT_CLASSES)
  queries = parse_queries(cfg.queries, size)
  per_class = max(1, cfg.num_images)
  t = run_generator.check_truncation(cfg.truncation)
  y = np.repeat(np.asarray(labels, np.int32), per_class)
  z = sample_latents(len(y), cfg.z_dim, cfg.seed, t).numpy()
  images, layers = _attention_rows(generator, z, y, queries, size)
  factor = max(1, TARGET_PIXELS // size)
  written = {}
  for name, (grid, probs) in layers.items():
    folder = os.path.join(output_dir, name.replace("/", "_"))
    paths, all_panels = [], []
    for b in range(len(y)):
      panels = image_panels(images[b], probs[b], queries, grid, factor)
      all_panels += panels
      fname = f"class{int(y[b]):04d}_{b % per_class:02d}.png"
      paths.append(grid_lib.save_image_grid(np.stack(panels), os.path.join(folder, fname),
                                            ncols=len(panels), pad=2))
    paths.append(grid_lib.save_image_grid(np.stack(all_panels), os.path.join(folder, "grid.png"),
                                          ncols=len(queries) + 1, pad=2))
    written[name] = paths
    logging.info("Attention layer %s (%dx%d, %d keys): wrote %d PNGs to %s.", name, grid, grid,
                 probs.shape[-1], len(paths), folder)
  return written


def attention(cfg, typed=None) -> int:
  """`./run.sh attention`: attention-map pictures of a run's generator."""
  run_cfg, generator, step, source = run_dir.restore_for_mode(cfg, "attention", typed)
  output_dir = cfg.output_dir or os.path.join(cfg.model_dir, OUTPUT_SUBDIR)
  written = write_attention_maps(generator, run_cfg, output_dir)
  logging.info("Attention maps of the %s at step %d: %s", source["weights"], step,
               ", ".join(f"{k}/grid.png" for k in written))
  return 0
