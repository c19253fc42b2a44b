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

How keys map to pixels: sagan_tf/attention_image.py (the rendering, shared
with the TensorBoard attention images of training).
"""

from __future__ import annotations

import os
from typing import Dict, List

from absl import logging
import numpy as np
import tensorflow as tf

from sagan_tf import image_grid as grid_lib
from sagan_tf import run_dir
from sagan_tf.attention_image import (  # noqa: F401 (attention_map ... : this tool's API)
    attention_map, colormap, image_panels, mark, overlay, parse_queries, query_index, upscale,
    write_pngs)
from sagan_tf.errors import UserError
from sagan_tf.export import sample_latents
from sagan_tf.tools import run_generator

OUTPUT_SUBDIR = run_dir.ATTENTION_SUBDIR
DEFAULT_CLASSES = 4
TARGET_PIXELS = 128
BATCH = 8


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
  written = write_pngs(images, layers, y, queries, output_dir, per_class, TARGET_PIXELS)
  for name, paths in written.items():
    grid, probs = layers[name]
    logging.info("Attention layer %s (%dx%d, %d keys): wrote %d PNGs to %s.", name, grid, grid,
                 probs.shape[-1], len(paths), os.path.dirname(paths[-1]))
  return written


def attention(cfg, typed=None) -> int:
  """`./run.sh attention`: attention-map pictures of a run's generator."""
  run_cfg, generator, step, source = run_dir.restore_for_mode(cfg, "attention", typed)
  output_dir = cfg.output_dir or os.path.join(cfg.model_dir, OUTPUT_SUBDIR)
  written = write_attention_maps(generator, run_cfg, output_dir)
  logging.info("Attention maps of the %s at step %d: %s", source["weights"], step,
               ", ".join(f"{k}/grid.png" for k in written))
  return 0
