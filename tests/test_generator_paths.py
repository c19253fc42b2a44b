"""The generator's forward pass exists once: the Keras model, the folded export
and the class interpolation run the same block functions and agree."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf import export as export_lib
from sagan_tf.layers import attention as attention_lib
from sagan_tf.models import generator as generator_lib
from sagan_tf.models.generator import build_generator
from sagan_tf.tools import sample as sample_lib
from tool_fixtures import perturbed_generator, tiny_config

# Two attention layers (8x8 and 16x16) so that every kind of stage is folded.
CFG = tiny_config("original", g_attention_res=(8, 16))


@pytest.fixture(scope="module")
def generator():
  return perturbed_generator(CFG, seed=3)


def _inputs(n=4):
  z = tf.random.stateless_normal([n, CFG.z_dim], seed=[5, 6])
  labels = tf.constant([i % CFG.num_classes for i in range(n)], tf.int32)
  return z, labels


def _three_uses(g, z, labels):
  """(Keras model in inference mode, folded export, interpolation at one-hot endpoints)."""
  keras_out = g(z, labels, training=False, update_u=False).numpy()
  served = export_lib.ServingGenerator(g).images(z, labels).numpy()
  mixed = sample_lib.generate_mixed(g, z, tf.one_hot(labels, CFG.num_classes)).numpy()
  return keras_out, served, mixed


def test_model_export_and_class_interpolation_agree(generator):
  z, labels = _inputs()
  keras_out, served, mixed = _three_uses(generator, z, labels)
  assert keras_out.std() > 0.05  # a perturbed model, not a constant picture
  np.testing.assert_allclose(served, keras_out, atol=1e-6, rtol=0)
  np.testing.assert_allclose(mixed, keras_out, atol=1e-6, rtol=0)


def test_class_interpolation_equals_a_model_whose_class_rows_are_mixed(generator):
  """Weights (1-a, a) on classes (0, 2) == class 0 with rows (1-a) row0 + a row2."""
  a = 0.3
  z, _ = _inputs(2)
  w = np.zeros([2, CFG.num_classes], np.float32)
  w[:, 0], w[:, 2] = 1 - a, a
  got = sample_lib.generate_mixed(generator, z, w).numpy()
  other = build_generator(CFG)
  for dst, src in zip(other.variables, generator.variables):
    dst.assign(src)
  for name, var in other.tf1_variable_map().items():
    if "/cbn_" in name and name.rsplit("/", 1)[-1] in ("gamma", "beta"):
      table = var.numpy()
      table[0] = (1 - a) * table[0] + a * table[2]
      var.assign(table)
  want = other(z, tf.zeros([2], tf.int32), training=False, update_u=False).numpy()
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
  plain = generator(z, tf.zeros([2], tf.int32), training=False, update_u=False).numpy()
  assert np.abs(got - plain).max() > 1e-3


@pytest.mark.parametrize("module, name", [(generator_lib, "up_block"),
                                          (attention_lib, "self_attention")])
def test_one_edit_of_a_block_changes_all_three_uses_alike(generator, monkeypatch, module,
                                                          name):
  z, labels = _inputs()
  before, _, _ = _three_uses(generator, z, labels)
  block = getattr(module, name)
  if name == "up_block":
    edited = lambda x, *ops: block(x, *ops) * 0.5
  else:
    def edited(x, *args):
      out, probs = block(x, *args)
      return 2.0 * out - x, probs
  monkeypatch.setattr(module, name, edited)
  keras_out, served, mixed = _three_uses(generator, z, labels)
  assert np.abs(keras_out - before).max() > 1e-2
  np.testing.assert_allclose(served, keras_out, atol=1e-6, rtol=0)
  np.testing.assert_allclose(mixed, keras_out, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_bfloat16_model_class_weights_stay_float32():
  """Keras would cast float inputs to bfloat16; the class weights must not be."""
  cfg = dataclasses.replace(CFG, precision="bfloat16")
  g = perturbed_generator(cfg, seed=4)
  z, _ = _inputs(2)
  w = tf.constant([[0.7, 0.0, 0.3], [0.3, 0.0, 0.7]], tf.float32)
  captured = []
  block = g.stages[0].cbn_0
  original_call = block.call

  def spy(x, classes, training=False):
    captured.append(classes)
    return original_call(x, classes, training=training)

  block.call = spy
  try:
    sample_lib.generate_mixed(g, z, w)
  finally:
    del block.call
  assert captured and captured[0].dtype == tf.float32
  np.testing.assert_array_equal(captured[0].numpy(), w.numpy())
