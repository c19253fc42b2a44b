"""train/adam.FusedAdam: one ResourceApplyAdam per variable, Keras Adam's
interface and checkpoints, TF1 AdamOptimizer's numbers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sagan_tf.train.adam import FusedAdam

SETTINGS = dict(learning_rate=4e-4, beta_1=0.0, beta_2=0.999, epsilon=1e-8)   # the original's
SHAPES = [(3, 3, 4, 5), (5,), (1, 7)]
STEPS = 6


def _grads(step, scale=1.0):
  rng = np.random.default_rng(100 + step)
  return [tf.constant(scale * rng.normal(size=s), tf.float32) for s in SHAPES]


def _variables(prefix="w"):
  rng = np.random.default_rng(7)
  return [tf.Variable(rng.normal(size=s).astype(np.float32), name=f"{prefix}{i}")
          for i, s in enumerate(SHAPES)]


def _run(opt, steps=STEPS, **settings):
  vs = _variables()
  opt.build(vs)
  for t in range(steps):
    opt.apply_gradients(zip(_grads(t), vs))
  return vs, opt


def tf1_adam_reference(var0, grads, lr, beta1, beta2, eps):
  """numpy TF1 AdamOptimizer (lr: one value, or one per step): hyperparameters as float32 tensors (so 1 - beta2 is
  1 - float32(0.999)), beta-power accumulators multiplied in float32 each step,
  epsilon outside the sqrt; the arithmetic itself in float64."""
  lrs = [float(np.float32(r)) for r in (lr if isinstance(lr, list) else [lr] * len(grads))]
  beta1, beta2, eps = (float(np.float32(h)) for h in (beta1, beta2, eps))
  var, m, v = var0.astype(np.float64), np.zeros(var0.shape), np.zeros(var0.shape)
  beta1_power, beta2_power = np.float32(beta1), np.float32(beta2)
  for lr, g in zip(lrs, grads):
    lr_t = lr * np.sqrt(1 - float(beta2_power)) / (1 - float(beta1_power))
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    var = var - lr_t * m / (np.sqrt(v) + eps)
    beta1_power = np.float32(beta1_power * np.float32(beta1))
    beta2_power = np.float32(beta2_power * np.float32(beta2))
  return var, m, v


@pytest.mark.parametrize("beta_1", [0.0, 0.5])
def test_equals_the_tf1_reference_and_keras_adam_over_several_steps(beta_1):
  settings = dict(SETTINGS, beta_1=beta_1)
  fused, fopt = _run(FusedAdam(**settings))
  keras_vs, kopt = _run(keras.optimizers.Adam(**settings))
  assert int(fopt.iterations) == int(kopt.iterations) == STEPS
  start = [v.numpy() for v in _variables()]
  for i, f in enumerate(fused):
    want_var, want_m, want_v = tf1_adam_reference(
        start[i], [g[i].numpy().astype(np.float64) for g in map(_grads, range(STEPS))],
        settings["learning_rate"], beta_1, settings["beta_2"], settings["epsilon"])
    assert np.abs(want_var - start[i]).max() > 2 * settings["learning_rate"]  # it moved
    # float32 rounding of weights ~1: ~1e-7, below 1e-3 of one Adam step (lr).
    np.testing.assert_allclose(f.numpy(), want_var, rtol=0, atol=4e-7)
    # The kernel's m + (g - m)(1 - beta1) rounds at the ulp of the old m (|m| ~ 1).
    np.testing.assert_allclose(fopt._momentums[i].numpy(), want_m, rtol=1e-6, atol=5e-7)
    np.testing.assert_allclose(fopt._velocities[i].numpy(), want_v, rtol=1e-6, atol=1e-9)
    # Keras Adam: the same update, except that it rounds 1 - beta_2 from float64
    # (0.001) where TF1's kernel takes 1 - float32(0.999) = 0.00099998713: its
    # velocity is 1.3e-5 (relative) larger; weights differ by ~1e-5 of a step.
    k = keras_vs[i].numpy()
    np.testing.assert_allclose(f.numpy(), k, rtol=0, atol=2e-7)
    np.testing.assert_allclose(fopt._momentums[i].numpy(), kopt._momentums[i].numpy(),
                               rtol=1e-6, atol=5e-7)
    np.testing.assert_allclose(fopt._velocities[i].numpy(), kopt._velocities[i].numpy(),
                               rtol=2e-5, atol=1e-12)


def test_each_variable_is_one_fused_kernel():
  vs = _variables()
  opt = FusedAdam(**SETTINGS)
  opt.build(vs)

  @tf.function
  def apply(grads):
    opt.apply_gradients(zip(grads, vs))

  ops = [op.type for op in apply.get_concrete_function(
      [tf.TensorSpec(s) for s in SHAPES]).graph.get_operations()]
  assert ops.count("ResourceApplyAdam") == len(SHAPES)
  assert "Sqrt" not in ops        # no elementwise Adam passes left


def test_learning_rate_assignable_and_iterations_counted():
  vs = _variables()
  opt = FusedAdam(**SETTINGS)
  opt.build(vs)
  opt.learning_rate.assign(0.0)       # lr 0: nothing moves, the slots still update
  before = [v.numpy() for v in vs]
  opt.apply_gradients(zip(_grads(0), vs))
  for b, v in zip(before, vs):
    np.testing.assert_array_equal(v.numpy(), b)
  assert int(opt.iterations) == 1 and float(np.abs(opt._velocities[0].numpy()).max()) > 0
  opt.learning_rate = 1e-3
  opt.apply_gradients(zip(_grads(1), vs))
  assert int(opt.iterations) == 2 and float(opt.learning_rate) == pytest.approx(1e-3)
  for i, v in enumerate(vs):
    want, _, _ = tf1_adam_reference(before[i], [_grads(t)[i].numpy() for t in range(2)],
                                    [0.0, 1e-3], SETTINGS["beta_1"], SETTINGS["beta_2"],
                                    SETTINGS["epsilon"])
    assert np.abs(want - before[i]).max() > 5e-4       # moved by the second step
    np.testing.assert_allclose(v.numpy(), want, rtol=0, atol=4e-7)


def test_same_slot_variables_and_checkpoints_as_keras_adam(tmp_path):
  fused_vs, fopt = _run(FusedAdam(**SETTINGS), steps=2)
  keras_vs, kopt = _run(keras.optimizers.Adam(**SETTINGS), steps=0)
  # Same variables in the same order (paths differ only in the optimizer's auto name,
  # "fused_adam/..." vs "adam/...", which checkpoints do not store).
  assert [v.name for v in fopt.variables] == [v.name for v in kopt.variables]
  assert [v.shape for v in fopt.variables] == [v.shape for v in kopt.variables]
  path = tf.train.Checkpoint(optimizer=fopt, vars=fused_vs).write(str(tmp_path / "fused"))
  tf.train.Checkpoint(optimizer=kopt, vars=keras_vs).read(path).assert_consumed()
  for a, b in zip(fopt.variables, kopt.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  # ... and a Keras Adam checkpoint restores into FusedAdam, which continues as Keras would.
  path = tf.train.Checkpoint(optimizer=kopt, vars=keras_vs).write(str(tmp_path / "keras"))
  restored_vs, ropt = _run(FusedAdam(**SETTINGS), steps=0)
  tf.train.Checkpoint(optimizer=ropt, vars=restored_vs).read(path).assert_consumed()
  assert int(ropt.iterations) == 2
  ropt.apply_gradients(zip(_grads(2), restored_vs))
  kopt.apply_gradients(zip(_grads(2), keras_vs))
  for a, b in zip(restored_vs, keras_vs):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def _distributed_run(strategy, make_opt):
  """Two replicas with different gradients (summed, as the train step does)."""
  with strategy.scope():
    vs = _variables()
    opt = make_opt()
    opt.build(vs)

  def replica_fn(grads):
    rid = tf.distribute.get_replica_context().replica_id_in_sync_group
    grads = [g * tf.cast(rid + 1, tf.float32) for g in grads]
    opt.apply_gradients(zip(grads, vs))

  @tf.function
  def step_fn(grads):
    strategy.run(replica_fn, args=(grads,))

  for t in range(3):
    step_fn(_grads(t))
  return vs, opt


def test_mirrored_strategy_updates_every_replica_copy_as_keras_adam(two_cpu_strategy):
  fused_vs, fopt = _distributed_run(two_cpu_strategy, lambda: FusedAdam(**SETTINGS))
  keras_vs, _ = _distributed_run(two_cpu_strategy, lambda: keras.optimizers.Adam(**SETTINGS))
  assert int(fopt.iterations.numpy()) == 3
  for f, k in zip(fused_vs, keras_vs):
    copies = two_cpu_strategy.experimental_local_results(f)
    assert len(copies) == 2
    for c in copies:
      np.testing.assert_allclose(c.numpy(), k.numpy(), rtol=1e-6, atol=1e-7)
    for slots in (fopt._momentums, fopt._velocities):
      a, b = two_cpu_strategy.experimental_local_results(slots[0].value)
      np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_under_xla():
  vs = _variables()
  opt = FusedAdam(**SETTINGS)
  opt.build(vs)

  @tf.function(jit_compile=True)
  def apply(grads):
    opt.apply_gradients(zip(grads, vs))

  for t in range(3):
    apply(_grads(t))
  keras_vs, _ = _run(keras.optimizers.Adam(**SETTINGS), steps=3)
  assert int(opt.iterations) == 3
  for f, k in zip(vs, keras_vs):
    np.testing.assert_allclose(f.numpy(), k.numpy(), rtol=1e-6, atol=1e-7)


def test_bfloat16_mixed_precision_keeps_float32_variables_and_slots():
  def train(opt):
    keras.utils.set_random_seed(3)
    layer = keras.layers.Dense(4, dtype="mixed_bfloat16")
    x = tf.constant(np.random.default_rng(1).normal(size=(8, 6)), tf.float32)
    layer.build((None, 6))
    opt.build(layer.trainable_variables)
    for _ in range(3):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.cast(layer(x), tf.float32) ** 2)
      grads = tape.gradient(loss, layer.trainable_variables)
      opt.apply_gradients(zip(grads, layer.trainable_variables))
    return layer, opt

  layer, opt = train(FusedAdam(**SETTINGS))
  ref, _ = train(keras.optimizers.Adam(**SETTINGS))
  assert layer.compute_dtype == "bfloat16"
  assert {v.dtype for v in layer.trainable_variables + opt.variables[1:]} == {"float32"}
  for a, b in zip(layer.trainable_variables, ref.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
