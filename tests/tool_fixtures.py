"""Tiny generators and run directories for the export / sample / attention tests."""

import dataclasses

import numpy as np
import tensorflow as tf

from sagan_tf.config import Config
from sagan_tf.models.generator import build_generator
from sagan_tf import run_dir


def tiny_config(variant="original", **overrides):
  """32x32, 3 classes, gf_dim 8 (channels 32, 16, 8), attention at 16x16."""
  return dataclasses.replace(Config.preset("demo"), gf_dim=8, num_classes=3,
                             precision="float32", attention_variant=variant, **overrides)


def perturb(generator, seed):
  """Moves every variable away from its initial value, so folding is exercised:
  u random, moving statistics not 0/1, per-class gamma/beta distinct,
  attention gamma 0.7, biases non-zero."""
  rng = np.random.RandomState(seed)
  for name, v in generator.tf1_variable_map().items():
    leaf = name.rsplit("/", 1)[-1]
    shape = tuple(v.shape)
    if leaf == "u":
      value = rng.normal(size=shape)
    elif leaf in ("var", "moving_variance"):
      value = rng.uniform(0.5, 2.0, size=shape)
    elif leaf in ("mean", "moving_mean"):
      value = rng.normal(scale=0.3, size=shape)
    elif leaf == "sigma_ratio":
      value = np.float32(0.7)
    elif leaf == "gamma":
      value = 1.0 + rng.normal(scale=0.2, size=shape)
    else:
      value = v.numpy() + rng.normal(scale=0.05, size=shape)
    v.assign(np.asarray(value, np.float32).reshape(shape))
  return generator


def perturbed_generator(cfg, seed=1):
  return perturb(build_generator(cfg), seed)


def write_run(model_dir, cfg, step=3, ema=True):
  """A run directory as training leaves it: config.json and checkpoints/ckpt-<step>
  holding `generator`, `step` and (ema=True) `ema_generator`, with different
  weights. Returns (generator, ema_generator or None)."""
  cfg = dataclasses.replace(cfg, model_dir=model_dir)
  run_dir.write_run_config(cfg, model_dir)
  g = perturbed_generator(cfg, 1)
  parts = dict(generator=run_dir.model_table(g), step=tf.Variable(step, dtype=tf.int64))
  e = None
  if ema:
    e = perturbed_generator(cfg, 2)
    parts["ema_generator"] = run_dir.model_table(e)
  manager = run_dir.make_manager(tf.train.Checkpoint(**parts), model_dir, 1)
  manager.save(checkpoint_number=step)
  return g, e
