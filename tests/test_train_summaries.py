"""What training writes to TensorBoard besides the losses (train/summaries.py),
read back from the event files, and the launch's step count in the last line."""

import dataclasses
import glob
import logging as py_logging
import os

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf import config as config_lib
from sagan_tf import image_grid
from sagan_tf.train import loop
from sagan_tf.train import setup
from sagan_tf.train import step as step_lib
from sagan_tf.train import summaries

import train_helpers as th


def _events(model_dir):
  """{tag: [(step, value)]}: scalars as floats, images as uint8 arrays, text as str
  (other plugins: the tensor)."""
  out = {}
  for path in sorted(glob.glob(os.path.join(model_dir, "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        tensor = tf.make_ndarray(v.tensor)
        plugin = v.metadata.plugin_data.plugin_name
        if plugin == "images":  # [width, height, png...]
          value = tf.io.decode_png(tensor[2]).numpy()
        elif plugin == "text":
          value = tensor.item().decode()
        elif plugin == "scalars":
          value = float(tensor)
        else:
          value = tensor
        out.setdefault(v.tag, []).append((event.step, value))
  return out


def _random_batches(cfg, seed=3):
  """fn(input_context) -> a fixed stream of random batches in [-1, 1] (first one known)."""
  def dataset_fn(ctx):
    b = cfg.per_replica_batch(ctx.num_replicas_in_sync)
    return tf.data.Dataset.range(1000).map(lambda i: (
        tf.random.stateless_uniform([b, cfg.image_size, cfg.image_size, 3], [seed, i], -1, 1),
        tf.zeros([b], tf.int32)))
  return dataset_fn


def _numpy_sigma(w, u):
  """One power iteration from u, in numpy: sigma = v W u'^T (the SN layer's sigma)."""
  w_mat = np.reshape(w, [-1, w.shape[-1]]).astype(np.float64)
  v = u @ w_mat.T
  v /= np.linalg.norm(v)
  u_new = v @ w_mat
  u_new /= np.linalg.norm(u_new)
  return (v @ w_mat @ u_new.T).item()


def test_tensorboard_summaries_and_a_resumed_launch(tmp_path, caplog):
  cfg = config_lib.merge("train", th.tiny_config(model_dir=str(tmp_path), train_steps=2,
                                                 num_classes=2, lr_d=4e-4))
  trainer = loop.Trainer(cfg, tf.distribute.get_strategy(), _random_batches(cfg))
  assert trainer.run() == 0
  events = _events(cfg.model_dir)

  (step, text), = events["config"]
  assert step == 0 and "Launch at step 0 of 2" in text and '"image_size": 32' in text

  # The grid of the first batch (the one the data check pulls), 8 a row.
  (step, grid), = events["real_images"]
  first = next(iter(_random_batches(cfg)(tf.distribute.InputContext())))[0].numpy()
  assert step == 0
  np.testing.assert_array_equal(grid, image_grid.image_grid(first, 8))

  # The low-frequency scalars at the last step, from the final weights.
  models = trainer.models
  for name, model in (("generator", models.generator), ("discriminator", models.discriminator)):
    layers = model.sn_layers()
    assert layers
    for layer in layers:
      (step, value), = events[f"sn_sigma/{name}/{layer.tf1_scope}"]
      expected = _numpy_sigma(np.asarray(layer.kernel_variable), np.asarray(layer.u))
      assert step == 2 and value == pytest.approx(expected, rel=1e-4)
  for name, optimizer in (("generator", models.g_optimizer),
                          ("discriminator", models.d_optimizer)):
    (step, value), = events[f"grad_norm/{name}"]
    expected = np.sqrt(sum(np.sum(np.square(np.asarray(m, np.float64)))
                           for m in optimizer._momentums))  # pylint: disable=protected-access
    assert step == 2 and value == pytest.approx(expected, rel=1e-4) and value > 0

  # Attention at the sample step: 2 classes -> 2 rows of [image | 5 query panels],
  # 32 px upscaled to 64 (summaries.ATTENTION_PIXELS), 2 px padding.
  (step, picture), = events["attention/g_non_local"]
  assert step == 2 and picture.shape == (2 * 66 + 2, 6 * 66 + 2, 3)
  assert picture.std() > 0

  # A resume (with another lr_d): its config text lists the change, and the
  # last line counts this launch's steps, not the run's.
  caplog.clear()
  resumed = dataclasses.replace(cfg, train_steps=3, lr_d=1e-4, allow_config_change=True)
  with caplog.at_level(py_logging.INFO):
    assert loop.Trainer(resumed, tf.distribute.get_strategy()).run() == 0
  finished = [r.getMessage() for r in caplog.records if "Training finished" in r.getMessage()]
  assert len(finished) == 1 and "at step 3: 1 steps in" in finished[0], finished
  texts = dict(_events(cfg.model_dir)["config"])
  assert "lr_d: 0.0004 -> 0.0001" in texts[2] and "Launch at step 2 of 3" in texts[2]


def test_sigma_is_the_largest_singular_value_once_u_has_converged():
  cfg = th.tiny_config(g_attention_res=(), d_attention_res=())
  models = setup.build_gan(cfg)
  expected = {}
  for name, model in (("generator", models.generator), ("discriminator", models.discriminator)):
    for layer in model.sn_layers():
      w = np.asarray(layer.kernel_variable, np.float64)
      _, s, vh = np.linalg.svd(np.reshape(w, [-1, w.shape[-1]]), full_matrices=False)
      layer.u.assign(vh[:1].astype(np.float32))  # the top right singular vector
      expected[f"sn_sigma/{name}/{layer.tf1_scope}"] = s[0]
  sigmas = summaries.spectral_sigmas(models)
  assert sigmas.keys() == expected.keys()
  for tag, value in sigmas.items():
    assert value == pytest.approx(expected[tag], rel=1e-4), tag


def test_gradient_norm_is_the_norm_of_the_gradient_just_applied():
  cfg = th.tiny_config(g_attention_res=(), d_attention_res=(), beta1=0.0)
  models = setup.build_gan(cfg)
  assert summaries.gradient_norms(models, cfg.beta1) == {}  # no step yet
  z = tf.random.normal([4, cfg.z_dim])
  y = tf.constant([0, 1, 2, 0])
  x = tf.random.uniform([4, 32, 32, 3], -1, 1)
  for _ in range(2):  # the second gradient differs from the first (weights moved)
    grads, _ = step_lib.discriminator_gradients(models, cfg.loss, z, y, x, y)
    models.d_optimizer.apply_gradients(zip(grads, models.discriminator.trainable_variables))
  norms = summaries.gradient_norms(models, cfg.beta1)
  assert norms.keys() == {"grad_norm/discriminator"}
  assert norms["grad_norm/discriminator"] == pytest.approx(
      float(tf.linalg.global_norm(grads)), rel=1e-5)
  # beta1 > 0: the slot is an EMA, written under its own tag, bias-corrected.
  ema = summaries.gradient_norms(models, 0.5)["grad_norm_ema/discriminator"]
  assert ema == pytest.approx(norms["grad_norm/discriminator"] / (1 - 0.5 ** 2), rel=1e-6)
