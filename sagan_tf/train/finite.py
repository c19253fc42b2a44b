"""On-device check that a training state holds no NaN or Inf.

`all_finite(variables)` is what the train function ANDs into its `finite`
flag after every call (step.make_train_function), so that a checkpoint is
only written of a state whose every variable is finite: weights, Adam
moments, spectral-norm `u`, moving statistics, the EMA generator. The
losses alone do not show every divergence (with --adam_epsilon=0 the losses
stay finite while Adam writes NaN into the weights).
"""

from __future__ import annotations

from typing import Iterable, List

import tensorflow as tf


def state_variables(models) -> List[tf.Variable]:
  """Every floating-point variable of a step.GANModels (models and optimisers)."""
  out = []
  for part in (models.generator, models.discriminator, models.ema_generator,
               models.g_optimizer, models.d_optimizer):
    if part is not None:
      out += [v for v in part.variables if tf.as_dtype(v.dtype).is_floating]
  return out


def all_finite(variables: Iterable) -> tf.Tensor:
  """tf.bool scalar: True iff no element of any variable is NaN or +-Inf.

  One is_finite + reduce_all per variable (fused by the compiler; no
  concatenated copy of the weights), then one reduce_all over them.
  """
  flags = [tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v))) for v in variables]
  if not flags:
    return tf.constant(True)
  return tf.reduce_all(tf.stack(flags))
