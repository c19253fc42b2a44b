"""GAN losses on discriminator logits (original `model.py`).

All take logits [B] (any float dtype; computed in float32) and return scalar
means over the batch.

* hinge (default): L_D = mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))));
  L_G = -mean(D(G(z))).
* kl (non-saturating): L_D = mean(softplus(-D(x))) + mean(softplus(D(G(z))));
  L_G = -mean(D(G(z))), as the original's KL option.
"""

from __future__ import annotations

from typing import Tuple

import tensorflow as tf

from sagan_tf.config import LOSSES


def _check(kind: str) -> None:
  if kind not in LOSSES:
    raise ValueError(f"loss {kind!r} is not one of {LOSSES}")


def discriminator_loss(kind: str, real_logits, fake_logits) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """(d_loss, d_loss_real, d_loss_fake), each a float32 scalar."""
  _check(kind)
  real = tf.cast(real_logits, tf.float32)
  fake = tf.cast(fake_logits, tf.float32)
  if kind == "hinge":
    loss_real = tf.reduce_mean(tf.nn.relu(1.0 - real))
    loss_fake = tf.reduce_mean(tf.nn.relu(1.0 + fake))
  else:
    loss_real = tf.reduce_mean(tf.nn.softplus(-real))
    loss_fake = tf.reduce_mean(tf.nn.softplus(fake))
  return loss_real + loss_fake, loss_real, loss_fake


def generator_loss(kind: str, fake_logits) -> tf.Tensor:
  """-mean(D(G(z))) for both losses (the original's generator loss)."""
  _check(kind)
  return -tf.reduce_mean(tf.cast(fake_logits, tf.float32))
