"""`./run.sh sample --model_dir=DIR`: sample grids and interpolations as PNGs.

Writes to --output_dir (default DIR/samples_tool/):

  classes.png               one row per class (--labels, or up to 10 classes
                            spread over the range), --num_images columns; column
                            j uses the same z in every row
  class_<cccc>.png          the row of class c on its own (class_0003.png)
  latent_interpolation.png  per class, a row going linearly from z0 to z1
  class_interpolation.png   per consecutive pair of classes (a, b), a row with
                            one fixed z whose class parameters go from a to b

z comes from `sagan_tf.export.sample_latents` (--truncation: 1 = N(0,1),
t < 1 = t * (N(0,1) truncated to [-2, 2])), seeded by --seed, so a command
gives the same pictures every time.

Class interpolation mixes the class embedding: class enters the generator
only through the per-class gamma/beta rows of its conditional batch norms,
so an example with class weights w (a row of [num_classes], summing to 1)
uses gamma = w @ gamma_table and beta = w @ beta_table (`generate_mixed`).
One-hot weights give exactly generator(z, labels).
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from sagan_tf import image_grid as grid_lib
from sagan_tf import run_dir
from sagan_tf.export import sample_latents
from sagan_tf.tools import run_generator

OUTPUT_SUBDIR = "samples_tool"
DEFAULT_CLASSES = 10
# Offsets of --seed for the three pictures (each draws its own z).
_SEED_CLASSES, _SEED_LATENT, _SEED_CLASS_MIX = 0, 1, 2


# ------------------------------------------------------------ class mixing
def generate_mixed(generator, z, class_weights) -> tf.Tensor:
  """Images [B,S,S,3] in [-1,1] for z [B, z_dim] and class weights [B, num_classes].

  The generator in inference mode (moving statistics, no `u` update) given
  class weights instead of labels: its conditional batch norms use the
  weighted mix of the class rows of gamma and beta
  (`layers.conditional_bn.class_rows`). One-hot weights reproduce
  generator(z, labels).
  """
  return generator(z, tf.convert_to_tensor(class_weights, tf.float32), training=False,
                   update_u=False)


def class_mix_weights(a: int, b: int, steps: int, num_classes: int) -> np.ndarray:
  """[steps, num_classes] weights going linearly from one-hot a to one-hot b."""
  alphas = np.linspace(0.0, 1.0, steps, dtype=np.float32)
  w = np.zeros([steps, num_classes], np.float32)
  w[:, a] += 1.0 - alphas
  w[:, b] += alphas
  return w


def interpolate_latents(z0, z1, steps: int) -> np.ndarray:
  """[steps, z_dim]: (1 - a) z0 + a z1 for a = 0 .. 1 (linear, as BigGAN's figures)."""
  alphas = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
  return (1.0 - alphas) * np.asarray(z0, np.float32)[None] + alphas * np.asarray(
      z1, np.float32)[None]


# ------------------------------------------------------------ pictures
def _generate(generator, z, labels, batch: int = 64) -> np.ndarray:
  out = []
  for i in range(0, len(labels), batch):
    out.append(generator(tf.constant(z[i:i + batch]), tf.constant(labels[i:i + batch], tf.int32),
                         training=False, update_u=False).numpy())
  return np.concatenate(out)


def _latents(n: int, z_dim: int, seed: int, truncation: float) -> np.ndarray:
  return sample_latents(n, z_dim, seed, truncation).numpy()


def class_pairs(labels: Sequence[int], num_classes: int):
  """Consecutive pairs of labels; one label c pairs with (c + 1) mod num_classes."""
  if len(labels) == 1:
    return [(labels[0], (labels[0] + 1) % num_classes)]
  return list(zip(labels[:-1], labels[1:]))


def write_samples(generator, cfg, output_dir: str) -> dict:
  """Writes the PNGs described in the module docstring; returns {name: path}."""
  n = max(2, cfg.num_images)
  k, zd = cfg.num_classes, cfg.z_dim
  labels = run_generator.choose_labels(cfg.labels, k, DEFAULT_CLASSES)
  t = run_generator.check_truncation(cfg.truncation)
  scale = max(1, 64 // cfg.image_size)
  paths = {}

  def save(images, name, ncols):
    path = os.path.join(output_dir, name)
    paths[name] = grid_lib.save_image_grid(images, path, ncols=ncols, scale=scale)

  z = _latents(n, zd, cfg.seed + _SEED_CLASSES, t)
  rows = _generate(generator, np.tile(z, [len(labels), 1]), np.repeat(labels, n))
  save(rows, "classes.png", n)
  for i, c in enumerate(labels):
    save(rows[i * n:(i + 1) * n], f"class_{c:04d}.png", n)

  ends = _latents(2 * len(labels), zd, cfg.seed + _SEED_LATENT, t)
  z = np.concatenate([interpolate_latents(ends[2 * i], ends[2 * i + 1], n)
                      for i in range(len(labels))])
  save(_generate(generator, z, np.repeat(labels, n)), "latent_interpolation.png", n)

  pairs = class_pairs(labels, k)
  z = np.repeat(_latents(len(pairs), zd, cfg.seed + _SEED_CLASS_MIX, t), n, axis=0)
  w = np.concatenate([class_mix_weights(a, b, n, k) for a, b in pairs])
  save(generate_mixed(generator, tf.constant(z), tf.constant(w)).numpy(),
       "class_interpolation.png", n)
  return paths


def sample(cfg, typed=None) -> int:
  """`./run.sh sample`: sample grids and interpolations of a run's generator."""
  run_cfg, generator, step, source = run_dir.restore_for_mode(cfg, "sample", typed)
  output_dir = cfg.output_dir or os.path.join(cfg.model_dir, OUTPUT_SUBDIR)
  paths = write_samples(generator, run_cfg, output_dir)
  logging.info("Wrote %d PNGs of the %s at step %d to %s: %s", len(paths), source["weights"],
               step, output_dir, ", ".join(sorted(paths)))
  return 0
