"""The train step's semantics, without the parity fixture (sagan_tf/train/step.py).

One call of `make_train_function(...)(iterator)` is compared with a plain
eager re-implementation written here, from the promises in step.py's
docstring (the original's sequential G-then-D train ops):

1. G step: G(z0) in training mode (G's `u` advance), D(fakes) WITHOUT a `u`
   update, hinge G loss, Adam on G.
2. D step, with the just-updated G: G(z1) again (G's `u` advance once more),
   D on the fakes reading D's `u` as they were, THEN D on the reals updating
   them (two separate calls here; the step may fuse them), hinge D loss,
   Adam on D.

Each other reading (D before G, the fake half after the real half's `u`
update, G's `u` advancing once per iteration instead of once per forward)
is shown to end somewhere else, so the comparison can fail; G's and D's `u`
are also checked against numpy power iterations.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf.train import setup
from sagan_tf.train import step as step_lib
from train_helpers import tiny_config

TOL = 1e-5


@pytest.fixture(scope="module")
def cfg():
  cfg = dataclasses.replace(tiny_config(), d_steps=1, steps_per_loop=1, ema_decay=0.0,
                            jit_compile=False)
  assert cfg.loss == "hinge"  # the losses written below
  return cfg


def _models_variables(models):
  return list(models.generator.variables) + list(models.discriminator.variables)


def _snapshot(models):
  return [v.numpy().copy() for v in _models_variables(models)]


@pytest.fixture(scope="module")
def reference_models(cfg):
  return setup.build_gan(cfg)


def _reset(models, snapshot):
  """models with the variable values of `snapshot` and zeroed Adam state."""
  for v, value in zip(_models_variables(models), snapshot):
    v.assign(value)
  setup.reset_optimizer(models.g_optimizer)
  setup.reset_optimizer(models.d_optimizer)
  return models


def _real_batch(cfg):
  x = tf.random.stateless_uniform([cfg.batch_size, cfg.image_size, cfg.image_size, 3],
                                  seed=[7, 1], minval=-1.0, maxval=1.0)
  y = tf.constant([i % cfg.num_classes for i in range(cfg.batch_size)], tf.int32)
  return x, y


def _hinge_d(real, fake):
  return tf.reduce_mean(tf.nn.relu(1.0 - real)) + tf.reduce_mean(tf.nn.relu(1.0 + fake))


def _apply(optimizer, tape, loss, variables):
  grads = tape.gradient(loss, variables)
  grads = [tf.convert_to_tensor(g) for g in grads]  # IndexedSlices of gathered rows
  optimizer.apply_gradients(zip(grads, variables))


def _reference_g_step(m, z, y):
  g, d = m.generator, m.discriminator
  with tf.GradientTape() as tape:
    fake_logits = d(g(z, y, training=True, update_u=True), y, training=True, update_u=False)
    loss = -tf.reduce_mean(fake_logits)
  _apply(m.g_optimizer, tape, loss, g.trainable_variables)


def _reference_d_step(m, z, y, x_real, y_real, fake_after_real=False, g_updates_u=True):
  g, d = m.generator, m.discriminator
  fakes = g(z, y, training=True, update_u=g_updates_u)
  with tf.GradientTape() as tape:
    if fake_after_real:  # a wrong reading: the fake half sees the updated u
      real = d(x_real, y_real, training=True, update_u=True)
      fake = d(fakes, y, training=True, update_u=False)
    else:
      fake = d(fakes, y, training=True, update_u=False)
      real = d(x_real, y_real, training=True, update_u=True)
    loss = _hinge_d(real, fake)
  _apply(m.d_optimizer, tape, loss, d.trainable_variables)


def _reference(cfg, m, snapshot, x_real, y_real, d_first=False, **d_kwargs):
  """Variable values after one iteration of the eager re-implementation on
  models m reset to `snapshot`."""
  m = _reset(m, snapshot)
  b = cfg.batch_size
  # The step's documented random state: draw 0 for the G step, 1 for the D step.
  z0, y0 = step_lib.generator_inputs(cfg, 0, 0, b)
  z1, y1 = step_lib.generator_inputs(cfg, 0, 1, b)
  if d_first:
    _reference_d_step(m, z1, y1, x_real, y_real, **d_kwargs)
    _reference_g_step(m, z0, y0)
  else:
    _reference_g_step(m, z0, y0)
    _reference_d_step(m, z1, y1, x_real, y_real, **d_kwargs)
  return _snapshot(m)


def _max_diff(a, b):
  return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def _noise_gradient(path: str) -> bool:
  """G's conv biases: each feeds a batch norm (the next block's cbn_0 or g_bn),
  so its true gradient is 0 and float32 rounding decides its sign; Adam with
  beta1 = 0 turns that into a step of up to lr either way, so graph and eager
  summation orders may differ there by up to 2 lr."""
  return path.startswith("generator/") and path.endswith("/biases")


@pytest.fixture(scope="module")
def stepped(cfg):
  """(variables before, after one train_fn call, the real batch)."""
  models = setup.build_gan(cfg)
  before = _snapshot(models)
  step_var = tf.Variable(0, dtype=tf.int64)
  x_real, y_real = _real_batch(cfg)
  train_fn = step_lib.make_train_function(tf.distribute.get_strategy(), models, cfg, step_var)
  metrics = train_fn(iter(tf.data.Dataset.from_tensors((x_real, y_real)).repeat()))
  assert int(step_var.numpy()) == 1 and bool(metrics["finite"])
  return before, _snapshot(models), (x_real, y_real)


@pytest.fixture(scope="module")
def reference(cfg, reference_models, stepped):
  """reading -> variable values after the eager re-implementation of that reading."""
  before, _, (x, y) = stepped
  return lambda **reading: _reference(cfg, reference_models, before, x, y, **reading)


def test_step_equals_g_then_d_eager_reference(cfg, stepped, reference, reference_models):
  before, after, _ = stepped
  ref = reference()
  paths = [v.path for v in _models_variables(reference_models)]
  exact = [i for i, p in enumerate(paths) if not _noise_gradient(p)]
  assert len(exact) > len(paths) // 2
  assert _max_diff([after[i] for i in exact], [ref[i] for i in exact]) <= TOL
  assert _max_diff(after, ref) <= 2 * cfg.lr_g
  assert _max_diff(after, before) > 100 * TOL  # the step changed the weights


# Each other reading of the step ends elsewhere, so the comparison above can fail.
def test_g_step_runs_before_d_step(stepped, reference):
  assert _max_diff(stepped[1], reference(d_first=True)) > 10 * TOL


def test_fake_pass_reads_u_before_real_pass_updates_it(stepped, reference):
  assert _max_diff(stepped[1], reference(fake_after_real=True)) > 10 * TOL


def test_d_step_generator_forward_advances_g_u_too(stepped, reference):
  assert _max_diff(stepped[1], reference(g_updates_u=False)) > 10 * TOL


def _power_iteration(w, u):
  """numpy: u' = l2n(l2n(u W^T) W) for W reshaped to [-1, out]."""
  w = w.reshape(-1, w.shape[-1]).astype(np.float64)
  v = u @ w.T
  v /= np.linalg.norm(v)
  u = v @ w
  return u / np.linalg.norm(u)


def _kernel_and_u(layer, values, index):
  """(W [.., out] as the power iteration sees it, u) of an SN layer, from values."""
  tv = layer.tf1_variables()
  name = next(k for k in ("w", "Matrix", "embedding_map") if k in tv)
  w = values[index[id(tv[name])]]
  return (w.T if name == "embedding_map" else w), values[index[id(layer.u)]]


def test_generator_u_advances_one_power_iteration_per_forward(reference_models, stepped):
  """G's u: one iteration on W0 (G step), one on W1 = W after the G update (D step)."""
  before, after, _ = stepped
  m = reference_models
  index = {id(v): i for i, v in enumerate(_models_variables(m))}
  layers = m.generator.sn_layers()
  assert len(layers) >= 5
  for layer in layers:
    w0, u0 = _kernel_and_u(layer, before, index)
    w1, u2 = _kernel_and_u(layer, after, index)
    np.testing.assert_allclose(u2, _power_iteration(w1, _power_iteration(w0, u0)),
                               atol=1e-5, err_msg=layer.tf1_scope)


def test_discriminator_u_advances_once_in_the_d_step_only(reference_models, stepped):
  """D's u: one iteration on D's weights before its update; the G step's D call reads only."""
  before, after, _ = stepped
  m = reference_models
  index = {id(v): i for i, v in enumerate(_models_variables(m))}
  layers = m.discriminator.sn_layers()
  assert len(layers) >= 5
  for layer in layers:
    w0, u0 = _kernel_and_u(layer, before, index)
    _, u1 = _kernel_and_u(layer, after, index)
    np.testing.assert_allclose(u1, _power_iteration(w0, u0), atol=1e-5,
                               err_msg=layer.tf1_scope)
