"""Adam as TF1's AdamOptimizer ran it: one fused `ResourceApplyAdam` per variable.

Keras 3's Adam updates a variable with ~8 elementwise passes over it (m, v,
their products, sqrt, division, the assignment); TF1's AdamOptimizer called
the fused kernel, one pass: 0.06 s against 0.39 s of CPU for G's 42M
parameters (BUILD_NOTES.md, "Speed"). `FusedAdam` is `keras.optimizers.Adam`
with only the per-variable update replaced, so the interface
(`apply_gradients`, an assignable `learning_rate`, `iterations`), the slot
variables (`momentum`, `velocity`, same names and order) and therefore the
checkpoints are Keras Adam's.

The update, for step t = iterations + 1 (float32, the variables' dtype):

    alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
    m <- m + (g - m) * (1 - beta1)
    v <- v + (g^2 - v) * (1 - beta2)
    var <- var - alpha * m / (sqrt(v) + epsilon)      (epsilon outside the sqrt)

= TF1's AdamOptimizer (which passed its beta-power accumulators where this
passes beta^t from `iterations`, as Keras does) = Keras Adam, term for term.
The kernel has CPU, GPU and XLA (TPU, jit_compile) implementations. Under a
tf.distribute strategy Keras calls `update_step` once per variable copy
inside `strategy.extended.update`, where the slots' `handle` is that copy's.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _handle(variable):
  """The resource handle of a Keras or tf variable (this replica's copy when
  called inside a distributed update)."""
  if isinstance(variable, keras.Variable):
    variable = variable.value
  return variable.handle


class FusedAdam(keras.optimizers.Adam):
  """keras.optimizers.Adam computing each dense update with ResourceApplyAdam.

  Same constructor, variables and results as keras.optimizers.Adam (to float
  rounding of the fused kernel); amsgrad and sparse (IndexedSlices)
  gradients take Keras' own update.
  """

  def update_step(self, gradient, variable, learning_rate):
    if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
      return super().update_step(gradient, variable, learning_rate)
    dtype = variable.dtype
    index = self._get_variable_index(variable)
    step = tf.cast(self.iterations + 1, dtype)
    beta_1 = tf.cast(self.beta_1, dtype)
    beta_2 = tf.cast(self.beta_2, dtype)
    tf.raw_ops.ResourceApplyAdam(
        var=_handle(variable), m=_handle(self._momentums[index]),
        v=_handle(self._velocities[index]),
        beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
        lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
        epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype),
        use_locking=False)
