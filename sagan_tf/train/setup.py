"""Creating the models and optimisers of a run (inside the strategy's scope)."""

from __future__ import annotations

import keras
import tensorflow as tf

from sagan_tf.models.discriminator import build_discriminator
from sagan_tf.models.generator import build_generator
from sagan_tf.train.adam import FusedAdam
from sagan_tf.train.step import GANModels


def make_adam(cfg, learning_rate: float) -> keras.optimizers.Adam:
  """Adam as the original's TF1 AdamOptimizer: beta1 0, beta2 0.999, epsilon 1e-8.

  (Keras' default epsilon is 1e-7.) The update equals TF1's
  `lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`, one fused
  ResourceApplyAdam per variable as TF1 ran it (train/adam.py); a Keras Adam
  in interface and checkpoint.
  """
  return FusedAdam(learning_rate=learning_rate, beta_1=cfg.beta1, beta_2=cfg.beta2,
                   epsilon=cfg.adam_epsilon)


def build_gan(cfg, strategy=None) -> GANModels:
  """G, D, both Adams (built, as Keras 3 needs before a distributed custom
  loop), and the EMA generator when cfg.ema_decay > 0; all in strategy.scope()."""
  strategy = strategy or tf.distribute.get_strategy()
  with strategy.scope():
    tf.random.set_seed(cfg.seed)
    keras.utils.set_random_seed(cfg.seed)
    g = build_generator(cfg)
    d = build_discriminator(cfg)
    g_opt = make_adam(cfg, cfg.lr_g)
    d_opt = make_adam(cfg, cfg.lr_d)
    g_opt.build(g.trainable_variables)
    d_opt.build(d.trainable_variables)
    ema = None
    if cfg.ema_decay > 0:
      ema = build_generator(cfg)
      for e, v in zip(ema.variables, g.variables):
        e.assign(v)
  return GANModels(generator=g, discriminator=d, g_optimizer=g_opt, d_optimizer=d_opt,
                   ema_generator=ema)


def reset_optimizer(optimizer) -> None:
  """Zero every slot and the step count (a fresh TF1 session's Adam state)."""
  optimizer.iterations.assign(0)
  for v in list(optimizer._momentums) + list(optimizer._velocities):  # Keras 3 Adam slots
    v.assign(tf.zeros(v.shape, v.dtype))
