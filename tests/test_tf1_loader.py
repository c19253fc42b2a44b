"""The TF1 checkpoint loader (sagan_tf/compat/tf1.py) on a checkpoint written here.

A tf.compat.v1 graph with the original's variable names (`model/<scope>/<leaf>`,
Adam slots `<var>/Adam` and `<var>/Adam_1`, counters) is saved with a TF1
Saver, then loaded into the Keras models; no ../shared fixture needed.
"""

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf.compat.tf1 import CheckpointMismatch, load_tf1_checkpoint
from sagan_tf.train import setup
from train_helpers import tiny_config

# Names the original code gives (generator.py / discriminator.py / ops.py of the
# released code); the model must define each of them.
ORIGINAL_NAMES = (
    "model/g_snh0/Matrix", "model/g_snh0/bias", "model/g_snh0/u",
    "model/g_block1/cbn_0/gamma", "model/g_block1/cbn_0/beta", "model/g_block1/cbn_0/mean",
    "model/g_block1/cbn_0/var", "model/g_block1/snconv1/w", "model/g_block1/snconv1/biases",
    "model/g_block1/snconv3/w", "model/g_non_local/sn_conv_theta/w",
    "model/g_non_local/sigma_ratio", "model/g_bn/gamma", "model/g_bn/moving_variance",
    "model/g_snconv_last/w", "model/d_optimized_block1/sn_conv1/w",
    "model/d_block2/sn_conv3/w", "model/d_non_local/sn_conv_attn/w",
    "model/d_sn_linear/Matrix", "model/d_embedding/embedding_map", "model/d_embedding/u",
)
G_SLOT_VAR = "model/g_block1/snconv1/w"
D_SLOT_VAR = "model/d_sn_linear/Matrix"


def _write_tf1_checkpoint(prefix, tensors):
  """Saves {name: array} with a TF1 Saver (V2 format) under the names given."""
  graph = tf.Graph()
  with graph.as_default():
    variables = []
    for name, value in tensors.items():
      scope, leaf = name.rsplit("/", 1) if "/" in name else ("", name)
      with tf.compat.v1.variable_scope(scope):
        variables.append(tf.compat.v1.get_variable(
            leaf, initializer=tf.constant(value), use_resource=False))
    saver = tf.compat.v1.train.Saver(variables)
    with tf.compat.v1.Session(graph=graph) as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      return saver.save(sess, prefix)


@pytest.fixture(scope="module")
def models():
  return setup.build_gan(tiny_config())


def _model_shapes(models):
  shapes = {}
  for model in (models.generator, models.discriminator):
    shapes.update({n: tuple(v.shape) for n, v in model.tf1_variable_map().items()})
  return shapes


def _random_tensors(shapes, seed=0):
  rng = np.random.RandomState(seed)
  return {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}


def test_model_defines_the_original_names(models):
  shapes = _model_shapes(models)
  assert not [n for n in ORIGINAL_NAMES if n not in shapes]
  assert shapes["model/g_block1/cbn_0/mean"] == (1, 1, 1, shapes["model/g_block1/cbn_0/gamma"][1])


def test_loads_every_variable_adam_slots_and_step_counts(models, tmp_path):
  shapes = _model_shapes(models)
  tensors = _random_tensors(shapes)
  slots = {f"{G_SLOT_VAR}/Adam": 0.1, f"{G_SLOT_VAR}/Adam_1": 0.2,
           f"{D_SLOT_VAR}/Adam": 0.3, f"{D_SLOT_VAR}/Adam_1": 0.4}
  for name, value in slots.items():
    tensors[name] = np.full(shapes[name.rsplit("/", 1)[0]], value, np.float32)
  tensors.update(global_step=np.int64(9), g_step=np.int64(5), d_step=np.int64(4),
                 beta1_power=np.float32(0.0), beta2_power=np.float32(0.999 ** 5))
  prefix = _write_tf1_checkpoint(str(tmp_path / "model.ckpt-9"), tensors)

  m = models
  mapping = load_tf1_checkpoint(prefix, m.generator, m.discriminator, m.g_optimizer,
                                m.d_optimizer)
  assert set(mapping) == set(shapes)
  for name, var in mapping.items():
    np.testing.assert_array_equal(var.numpy(), tensors[name], err_msg=name)
  for opt, var_name, (m_value, v_value), steps in (
      (m.g_optimizer, G_SLOT_VAR, (0.1, 0.2), 5), (m.d_optimizer, D_SLOT_VAR, (0.3, 0.4), 4)):
    idx = opt._get_variable_index(mapping[var_name])  # Keras 3 slot index
    np.testing.assert_array_equal(opt._momentums[idx].numpy(), m_value * np.ones_like(
        tensors[var_name]))
    np.testing.assert_array_equal(opt._velocities[idx].numpy(), v_value * np.ones_like(
        tensors[var_name]))
    assert int(opt.iterations.numpy()) == steps
  # A variable without slots in the checkpoint gets zero slots.
  other = mapping["model/g_snh0/Matrix"]
  idx = m.g_optimizer._get_variable_index(other)
  assert not np.any(m.g_optimizer._momentums[idx].numpy())


def test_missing_and_mis_shaped_variables_are_errors_naming_them(models, tmp_path):
  shapes = _model_shapes(models)
  tensors = _random_tensors(shapes, seed=1)
  del tensors["model/g_bn/gamma"]
  tensors["model/d_sn_linear/bias"] = np.zeros([2], np.float32)
  prefix = _write_tf1_checkpoint(str(tmp_path / "bad.ckpt"), tensors)
  with pytest.raises(CheckpointMismatch) as err:
    load_tf1_checkpoint(prefix, models.generator, models.discriminator)
  message = str(err.value)
  assert "missing from the checkpoint: model/g_bn/gamma" in message
  assert "model/d_sn_linear/bias: checkpoint [2] vs model [1]" in message


def test_a_path_that_is_no_checkpoint_is_a_user_error(tmp_path):
  from sagan_tf.errors import UserError
  with pytest.raises(UserError, match="without .index"):
    load_tf1_checkpoint(str(tmp_path / "nothing"), None, None)
