"""One GAN iteration, as the original runs it: the G step, then the D step.

Original (`train_imagenet.py` with TF-GAN's sequential train hooks): the
generator train op runs first, then the discriminator train op, which
recomputes G's forward pass with the just-updated G weights.

* G step: G forward (training; every G `u` advances; batch statistics, moving
  averages updated), D on the fakes without `u` update, Adam on G.
* D step: G forward again (one more `u` iteration, moving averages again),
  D on real data updating every D `u` and on the fakes reading the `u` from
  before that update, Adam on D.

Here the D step runs the real and fake batches through D as ONE pass over
[fakes; reals] with `update_u=True`: both halves see the same pre-update `u`
(what the original's D train op did in every trial, and what the parity
fixture pins) and `u` ends one power iteration further, with one
discriminator call instead of two.

The functions below run in a replica context (inside `strategy.run`) or
eagerly on one device. Losses are means over the per-replica batch and are
divided by the replica count before differentiation, because the optimiser
sums gradients over replicas.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Dict, Optional

import tensorflow as tf

from sagan_tf import losses
from sagan_tf.train import finite as finite_lib

# Seed streams of the stateless sampler (z and fake labels of each draw).
_DRAWS_PER_STEP = 64


@dataclasses.dataclass
class GANModels:
  """What one iteration reads and updates."""
  generator: object
  discriminator: object
  g_optimizer: object
  d_optimizer: object
  ema_generator: Optional[object] = None


def _densify(grads):
  # Gathered per-class gamma/beta give IndexedSlices; dense, duplicate rows are
  # summed, which equals TF1 Adam's sparse path here (it decays every row).
  return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]


def replica_info():
  """(replica id, number of replicas in sync) in the current context."""
  ctx = tf.distribute.get_replica_context()
  if ctx is None:
    return 0, 1
  return ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync


# Bits of each Philox draw that make one z (normal_from_bits).
Z_BITS = 23


def standard_normal(shape, seed):
  """float32 N(0, 1) of `shape`, a function of the int64 [2] `seed` only.

  The inverse normal CDF of Philox bits (normal_from_bits): the same numbers
  (to float32 rounding) on CPU, GPU, under XLA and on a TPU.
  `tf.random.stateless_normal` is not: its XLA kernel (and its AUTO_SELECT
  algorithm on a TPU) draws other numbers than the CPU kernel for the same
  seed, which would make a compiled step train on different z than the
  uncompiled one.
  """
  bits = tf.random.stateless_uniform(shape, seed=seed, minval=None, maxval=None,
                                     dtype=tf.uint32, alg="philox")
  return normal_from_bits(bits)


def normal_from_bits(bits):
  """uint32 bits -> float32 ndtri(u), u = (k + 0.5) / 2^23, k = the top 23 bits.

  u is exact in float32 and in (0, 1): (k + 0.5) < 2^23 has a free bit for
  the half, so u runs from 2^-24 to 1 - 2^-24 and |z| <= 5.2947. With 24
  bits, k + 0.5 rounds to k + 1 for k >= 2^23, and k = 2^24 - 1 gave u = 1,
  z = +inf: one draw in 2^24, which made the demo's losses non-finite after
  ~2,000-2,400 iterations (BUILD_NOTES, "Stateless z and fake labels").
  """
  k = tf.bitwise.right_shift(bits, tf.constant(32 - Z_BITS, tf.uint32))
  return tf.math.ndtri((tf.cast(k, tf.float32) + 0.5) * (2.0 ** -Z_BITS))


def generator_inputs(cfg, step, draw: int, per_replica_batch: int):
  """z [b, z_dim] ~ N(0,1) and fake labels [b] ~ U{0..C-1} for this replica.

  Stateless: a function of (cfg.seed, step, draw). The GLOBAL batch is drawn
  and this replica takes its slice, so 1 and N replicas with the same global
  batch see the same z and labels (and a resumed run the same as an unbroken
  one): the step counter is the whole random state.
  """
  rid, n = replica_info()
  global_batch = per_replica_batch * n
  counter = tf.cast(step, tf.int64) * _DRAWS_PER_STEP + draw
  seed_z = tf.stack([tf.constant(cfg.seed, tf.int64), counter * 2])
  seed_y = tf.stack([tf.constant(cfg.seed, tf.int64), counter * 2 + 1])
  z = standard_normal([global_batch, cfg.z_dim], seed_z)
  y = tf.random.stateless_uniform([global_batch], seed=seed_y, minval=0,
                                  maxval=cfg.num_classes, dtype=tf.int32, alg="philox")
  start = tf.cast(rid, tf.int32) * per_replica_batch
  return (tf.slice(z, [start, 0], [per_replica_batch, cfg.z_dim]),
          tf.slice(y, [start], [per_replica_batch]))


def generator_gradients(models: GANModels, loss_kind: str, z, y_fake):
  """G forward + D(fakes, no u update) + backward: (grads, metrics)."""
  g, d = models.generator, models.discriminator
  _, num_replicas = replica_info()
  with tf.GradientTape() as tape:
    fakes = g(z, y_fake, training=True, update_u=True)
    fake_logits = d(fakes, y_fake, training=True, update_u=False)
    g_loss = losses.generator_loss(loss_kind, fake_logits)
    scaled = g_loss / num_replicas
  grads = _densify(tape.gradient(scaled, g.trainable_variables))
  return grads, {"g_loss": g_loss, "g_fake_logits": fake_logits}


def discriminator_gradients(models: GANModels, loss_kind: str, z, y_fake, x_real, y_real):
  """G forward (no tape) + one D pass over [fakes; reals] + backward: (grads, metrics)."""
  g, d = models.generator, models.discriminator
  _, num_replicas = replica_info()
  fakes = tf.stop_gradient(g(z, y_fake, training=True, update_u=True))
  b = tf.shape(fakes)[0]
  images = tf.concat([fakes, tf.cast(x_real, fakes.dtype)], axis=0)
  labels = tf.concat([tf.cast(y_fake, tf.int32), tf.cast(y_real, tf.int32)], axis=0)
  with tf.GradientTape() as tape:
    logits = d(images, labels, training=True, update_u=True)
    fake_logits, real_logits = logits[:b], logits[b:]
    d_loss, d_loss_real, d_loss_fake = losses.discriminator_loss(loss_kind, real_logits,
                                                                 fake_logits)
    scaled = d_loss / num_replicas
  grads = _densify(tape.gradient(scaled, d.trainable_variables))
  metrics = {"d_loss": d_loss, "d_loss_real": d_loss_real, "d_loss_fake": d_loss_fake,
             "g_loss_in_d_step": losses.generator_loss(loss_kind, fake_logits),
             "real_logits": real_logits, "fake_logits": fake_logits}
  return grads, metrics


def generator_step(models: GANModels, z, y_fake, gradients_fn):
  """The G train op: `gradients_fn(z, y_fake)`, then Adam on G. Returns metrics."""
  grads, metrics = gradients_fn(z, y_fake)
  models.g_optimizer.apply_gradients(zip(grads, models.generator.trainable_variables))
  return metrics


def discriminator_step(models: GANModels, z, y_fake, x_real, y_real, gradients_fn):
  """The D train op: `gradients_fn(z, y_fake, x_real, y_real)`, then Adam on D."""
  grads, metrics = gradients_fn(z, y_fake, x_real, y_real)
  models.d_optimizer.apply_gradients(zip(grads, models.discriminator.trainable_variables))
  return metrics


def gradient_functions(models: GANModels, loss_kind: str, jit_compile: bool = False):
  """(G gradients fn, D gradients fn) bound to the models.

  With jit_compile they are tf.functions whose forward + backward passes are
  XLA-compiled, the optimiser updates staying outside XLA: how the iteration
  is compiled under MirroredStrategy / MultiWorkerMirroredStrategy, whose
  gradient all-reduce (a `merge_call` on CPU) cannot run inside a nested
  tf.function. Without, plain functions inlined into the caller's graph.
  """
  g_fn = functools.partial(generator_gradients, models, loss_kind)
  d_fn = functools.partial(discriminator_gradients, models, loss_kind)
  if not jit_compile:
    # Inlined: a nested tf.function cannot hold the cross-replica all-reduce
    # of --cross_replica_bn under MirroredStrategy ("merge_call called while
    # defining a new graph").
    return g_fn, d_fn
  return tf.function(g_fn, jit_compile=True), tf.function(d_fn, jit_compile=True)


def update_ema(models: GANModels, decay: float, ema_start: int, step) -> None:
  """EMA of G's trainable weights; G's `u` and moving statistics are copied.

  `step` is the step count after this iteration. Before `ema_start` the EMA
  is a copy of G (decay 0), so it starts from the weights it will average
  rather than from initialisation.

  Runs in the replica context, on this replica's copies: G's trainable
  weights are the same on every replica after the all-reduced update, and
  the EMA's trainable variables (aggregation NONE) and ON_READ `u` / moving
  statistics are written locally, so the EMA costs no cross-replica traffic
  (in cross-replica context every ON_READ read would be an all-reduce).
  """
  ema = models.ema_generator
  if ema is None:
    return
  d = tf.where(tf.cast(step, tf.int64) >= ema_start, tf.constant(decay, tf.float32), 0.0)
  for e, v in zip(ema.trainable_variables, models.generator.trainable_variables):
    e.assign(d * e + (1.0 - d) * v)
  for e, v in zip(ema.non_trainable_variables, models.generator.non_trainable_variables):
    e.assign(v)


def replica_iteration(models: GANModels, cfg, gradient_fns, real_batches, step):
  """One iteration in a replica context: G step, cfg.d_steps D steps, EMA.

  Args:
    models, cfg, gradient_fns: closed over by the caller (never `strategy.run`
      arguments: TPUStrategy accepts tensors only).
    real_batches: cfg.d_steps pairs (images [b, H, W, 3], labels [b] int32),
      this replica's share of each real batch; one per D step.
    step: int64 scalar, the step count before this iteration.
  Returns:
    This replica's scalar metrics (float32).
  """
  g_fn, d_fn = gradient_fns
  per_replica = real_batches[0][0].shape[0]
  z, y = generator_inputs(cfg, step, 0, per_replica)
  g_metrics = generator_step(models, z, y, g_fn)
  for k, (x_real, y_real) in enumerate(real_batches):
    z, y = generator_inputs(cfg, step, 1 + k, per_replica)
    d_metrics = discriminator_step(models, z, y, x_real, y_real, d_fn)
  update_ema(models, cfg.ema_decay, cfg.ema_start, step + 1)
  metrics = {
      "d_loss": d_metrics["d_loss"], "d_loss_real": d_metrics["d_loss_real"],
      "d_loss_fake": d_metrics["d_loss_fake"], "g_loss": g_metrics["g_loss"],
      "real_logits_mean": tf.reduce_mean(d_metrics["real_logits"]),
      "fake_logits_mean": tf.reduce_mean(d_metrics["fake_logits"]),
  }
  return {k: tf.cast(metrics[k], tf.float32) for k in METRICS}


METRICS = ("d_loss", "d_loss_real", "d_loss_fake", "g_loss", "real_logits_mean",
           "fake_logits_mean")


def _run_loop(n: int, iteration):
  """`iteration(i)` -> metrics for i in 0..n-1 as ONE loop (traced and compiled
  once): (the last iteration's metrics, all losses finite)."""
  def finite(metrics):
    return tf.math.is_finite(metrics["d_loss"]) & tf.math.is_finite(metrics["g_loss"])

  if n == 1:
    metrics = iteration(tf.constant(0, tf.int64))
    return metrics, finite(metrics)
  metrics = {k: tf.constant(0.0, tf.float32) for k in METRICS}
  all_finite = tf.constant(True)
  for i in tf.range(n, dtype=tf.int64):
    metrics = iteration(i)
    all_finite &= finite(metrics)
  return metrics, all_finite


def compiles_whole_call(strategy, cfg) -> bool:
  """True when one call (cfg.steps_per_loop iterations) is ONE XLA computation.

  That is `jit_compile` on a single-device strategy (default or
  OneDeviceStrategy): the CPU/GPU proxy of what TPUStrategy compiles. The
  mirrored strategies keep the optimiser updates outside XLA (their gradient
  all-reduce), see `gradient_functions`; TPUStrategy compiles each replica
  iteration itself, whatever cfg.jit_compile says.
  """
  return (cfg.jit_compile and strategy.num_replicas_in_sync == 1 and not isinstance(
      strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy,
                 tf.distribute.TPUStrategy)))


# XLA:CPU runs convolutions inside a compiled while loop 50-120x slower than
# the same convolutions in a compiled call of their own: there the filter
# gradient keeps a layout its Eigen kernel does not take and is emitted as
# plain loops (one 3x3 conv and its filter gradient, [32, 16, 16, 128]: 2.0 s
# against 17 ms per iteration on an AMD EPYC Zen 5, oneDNN on or off; the
# demo's width-32 model 11.7 s against 0.23 s). So on a CPU each iteration is
# its own XLA call, looped on the host; elsewhere the loop is compiled too
# (the TPU's shape). BUILD_NOTES, "XLA:CPU and the steps_per_loop loop".
def loop_in_xla_by_default() -> bool:
  """Whether a whole-call-compiled train function compiles its loop too:
  not on a CPU (no GPU visible)."""
  return bool(tf.config.list_physical_devices("GPU"))


def make_train_function(strategy, models: GANModels, cfg, step_var,
                        loop_in_xla: Optional[bool] = None):
  """tf.function(iterator) -> metrics: cfg.steps_per_loop iterations on device.

  Each iteration takes cfg.d_steps batches from the distributed iterator and
  runs `replica_iteration` (G step, D steps, EMA) on every replica. Returns
  the last iteration's metrics (MEAN over replicas, float32 scalars) plus
  `finite` (bool: False if a loss was non-finite anywhere in the call, or
  any variable of the state is non-finite after it), and
  advances `step_var` by cfg.steps_per_loop.

  `strategy.run` gets tensors only (the batches and the step); models, config
  and functions are closed over, as TPUStrategy requires. How much of the
  call XLA compiles depends on the strategy: see `compiles_whole_call`,
  `gradient_functions` and BUILD_NOTES ("The train step under XLA and TPU").
  `loop_in_xla` (whole-call compilation only): whether the steps_per_loop
  loop is inside the XLA computation too, or each iteration is one XLA call
  in a host loop; None = `loop_in_xla_by_default()`.
  """
  n = cfg.steps_per_loop
  if compiles_whole_call(strategy, cfg):
    if loop_in_xla is None:
      loop_in_xla = loop_in_xla_by_default()
    return _whole_call_compiled(strategy, models, cfg, step_var, loop_in_xla)
  tpu = isinstance(strategy, tf.distribute.TPUStrategy)
  gradient_fns = gradient_functions(models, cfg.loss, jit_compile=cfg.jit_compile and not tpu)
  state_variables = finite_lib.state_variables(models)

  def replica_fn(real_batches, step):
    return replica_iteration(models, cfg, gradient_fns, real_batches, step)

  def one_iteration(iterator, step):
    batches = [next(iterator) for _ in range(cfg.d_steps)]
    per_replica = strategy.run(replica_fn, args=(batches, step))
    return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
            for k, v in per_replica.items()}

  @tf.function
  def train_fn(iterator):
    start = step_var.read_value()
    metrics, finite = _run_loop(n, lambda i: one_iteration(iterator, start + i))
    step_var.assign_add(n)
    # Checkpoints are written only of a finite state: weights, Adam slots, u,
    # moving statistics and EMA, not just the losses.
    finite &= finite_lib.all_finite(state_variables)
    return dict(metrics, finite=finite)

  return train_fn


def _whole_call_compiled(strategy, models: GANModels, cfg, step_var, loop_in_xla: bool):
  """make_train_function for `compiles_whole_call`: the state changes inside XLA.

  XLA cannot read a tf.data iterator, so each compiled call first takes its
  iterations' batches and stacks them ([iterations * d_steps, b, ...]); the
  compiled part loops over them. With `loop_in_xla` one compiled call runs
  all steps_per_loop iterations (device memory holds that many batches);
  without, each iteration is one compiled call in a host `tf.range` loop.
  """
  n, d_steps = cfg.steps_per_loop, cfg.d_steps
  per_call = n if loop_in_xla else 1
  gradient_fns = gradient_functions(models, cfg.loss, jit_compile=False)  # inside XLA anyway
  state_variables = finite_lib.state_variables(models)

  @tf.function(jit_compile=True)
  def compiled_call(images, labels, start):
    def iteration(i):
      batches = [(images[i * d_steps + k], labels[i * d_steps + k]) for k in range(d_steps)]
      return replica_iteration(models, cfg, gradient_fns, batches, start + i)

    metrics, finite = _run_loop(per_call, iteration)
    step_var.assign_add(per_call)
    finite &= finite_lib.all_finite(state_variables)
    return dict(metrics, finite=finite)

  def one_call(iterator):
    batches = [next(iterator) for _ in range(per_call * d_steps)]
    images = tf.stack([x for x, _ in batches])
    labels = tf.stack([tf.cast(y, tf.int32) for _, y in batches])
    return strategy.run(compiled_call, args=(images, labels, step_var.read_value()))

  @tf.function
  def train_fn(iterator):
    if per_call == n:  # the loop (if any) is inside the compiled call
      return one_call(iterator)
    metrics = {k: tf.constant(0.0, tf.float32) for k in METRICS}
    finite = tf.constant(True)
    for _ in tf.range(n):
      out = one_call(iterator)
      metrics = {k: out[k] for k in METRICS}
      finite &= out["finite"]
    return dict(metrics, finite=finite)

  train_fn.compiled_call = compiled_call  # tests inspect its XLA program
  return train_fn
