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
from sagan_tf.train import finite as finite_lib  # faults (issue 18)

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
  z = tf.random.stateless_normal([global_batch, cfg.z_dim], seed=seed_z)
  y = tf.random.stateless_uniform([global_batch], seed=seed_y, minval=0,
                                  maxval=cfg.num_classes, dtype=tf.int32)
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
  """(G gradients fn, D gradients fn) bound to the models, as tf.functions.

  With jit_compile the forward + backward passes are XLA-compiled; the
  optimiser updates stay outside XLA so that the cross-replica gradient
  all-reduce works under every strategy.
  """
  if not jit_compile:
    # Inlined into the caller's tf.function: a nested tf.function cannot hold
    # the cross-replica all-reduce of --cross_replica_bn under MirroredStrategy
    # ("merge_call called while defining a new graph").
    return (functools.partial(generator_gradients, models, loss_kind),
            functools.partial(discriminator_gradients, models, loss_kind))
  g_fn = tf.function(functools.partial(generator_gradients, models, loss_kind),
                     jit_compile=jit_compile)
  d_fn = tf.function(functools.partial(discriminator_gradients, models, loss_kind),
                     jit_compile=jit_compile)
  return g_fn, d_fn


def update_ema(models: GANModels, decay: float, ema_start: int, step) -> None:
  """EMA of G's trainable weights; G's `u` and moving statistics are copied.

  Before `ema_start` the EMA is a copy of G (decay 0), so it starts from the
  weights it will average rather than from initialisation.
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
  """G step then cfg.d_steps D steps (one real batch each), in a replica context."""
  g_fn, d_fn = gradient_fns
  per_replica = real_batches[0][0].shape[0]
  z, y = generator_inputs(cfg, step, 0, per_replica)
  g_metrics = generator_step(models, z, y, g_fn)
  for k, (x_real, y_real) in enumerate(real_batches):
    z, y = generator_inputs(cfg, step, 1 + k, per_replica)
    d_metrics = discriminator_step(models, z, y, x_real, y_real, d_fn)
  return {
      "d_loss": d_metrics["d_loss"], "d_loss_real": d_metrics["d_loss_real"],
      "d_loss_fake": d_metrics["d_loss_fake"], "g_loss": g_metrics["g_loss"],
      "real_logits_mean": tf.reduce_mean(d_metrics["real_logits"]),
      "fake_logits_mean": tf.reduce_mean(d_metrics["fake_logits"]),
  }


def make_train_function(strategy, models: GANModels, cfg, step_var):
  """tf.function(iterator) -> metrics: cfg.steps_per_loop iterations on device.

  Each iteration takes cfg.d_steps batches from the distributed iterator,
  runs `replica_iteration` on every replica, reduces the metrics (MEAN over
  replicas), advances `step_var` and the EMA. Returns the last iteration's
  metrics plus `finite` (False if a loss was non-finite anywhere in the loop,
  or any variable of the state is non-finite after it).
  """
  gradient_fns = gradient_functions(models, cfg.loss, jit_compile=cfg.jit_compile)
  state_variables = finite_lib.state_variables(models)  # faults (issue 18)

  def one_iteration(iterator):
    batches = [next(iterator) for _ in range(cfg.d_steps)]
    per_replica = strategy.run(
        replica_iteration, args=(models, cfg, gradient_fns, batches, step_var.read_value()))
    metrics = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
               for k, v in per_replica.items()}
    step_var.assign_add(1)
    update_ema(models, cfg.ema_decay, cfg.ema_start, step_var)
    return metrics

  @tf.function
  def train_fn(iterator):
    metrics = one_iteration(iterator)
    finite = tf.math.is_finite(metrics["d_loss"]) & tf.math.is_finite(metrics["g_loss"])
    if cfg.steps_per_loop > 1:  # else the loop body would be traced for nothing
      for _ in tf.range(cfg.steps_per_loop - 1):
        metrics = one_iteration(iterator)
        finite &= tf.math.is_finite(metrics["d_loss"]) & tf.math.is_finite(metrics["g_loss"])
    # faults (issue 18): finite also requires every variable of the state
    # (weights, Adam slots, u, moving statistics, EMA) to be finite.
    finite &= finite_lib.all_finite(state_variables)
    return dict(metrics, finite=finite)

  return train_fn
