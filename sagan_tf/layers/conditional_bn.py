"""The generator's batch norms, as the original ran them.

`ConditionalBatchNorm` (ops.ConditionalBatchNorm): per-class gamma/beta
[num_classes, C] gathered by label, moving `mean`/`var` [1,1,1,C], epsilon
1e-5, decay 0.999; training normalises with the batch mean and biased
variance over [B, H, W] and updates the moving statistics with them;
inference uses the moving statistics.

`OutputBatchNorm` (the last G layer `g_bn`, a TF1 `contrib.layers.batch_norm`
call executed by TF 1.5's fused kernel): gamma/beta [C], decay 0.9999,
effective epsilon 1.001e-5 in training and inference; the moving variance
is updated with the Bessel-corrected batch variance.

Statistics are float32 also under bfloat16 compute. With `cross_replica=True`
batch moments are averaged over all replicas (`--cross_replica_bn`).
Moving statistics are ON_READ/MEAN variables: each replica keeps its own
running average and a read (checkpoint, inference) gives their mean.
"""

from __future__ import annotations

from typing import Dict, Tuple

import keras
import tensorflow as tf

CBN_EPSILON = 1e-5
CBN_DECAY = 0.999
# TF 1.5's fused batch norm raised any epsilon below 1.001e-5 to 1.001e-5;
# TF 2.21 no longer does, so the original's effective value is explicit here.
OUTPUT_BN_EPSILON = 1.001e-5
OUTPUT_BN_DECAY = 0.9999


def _moving_variable(shape, init: str, name: str) -> keras.Variable:
  return keras.Variable(initializer=init, shape=shape, dtype="float32", trainable=False,
                        autocast=False, aggregation="mean", synchronization="on_read",
                        name=name)


def cross_replica_moments(x: tf.Tensor, axes=(0, 1, 2)) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """(mean, biased variance, count) over `axes` and over all replicas in sync.

  Computed as E[x^2] - E[x]^2 from all-reduced means (one all-reduce), so one
  replica and N replicas with the same global batch agree to rounding.
  """
  ctx = tf.distribute.get_replica_context()
  n_local = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), list(axes))), tf.float32)
  mean = tf.reduce_mean(x, axis=axes, keepdims=True)
  mean_sq = tf.reduce_mean(tf.square(x), axis=axes, keepdims=True)
  replicas = 1
  if ctx is not None and ctx.num_replicas_in_sync > 1:
    replicas = ctx.num_replicas_in_sync
    mean, mean_sq = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, [mean, mean_sq])
  var = tf.maximum(mean_sq - tf.square(mean), 0.0)
  return mean, var, n_local * replicas


def class_rows(table: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
  """Per-example rows [B, C] of a per-class table [num_classes, C].

  classes: int labels [B] (gathers the rows) or float32 class weights
  [B, num_classes] (the weighted mix `weights @ table`, used by the class
  interpolation; a one-hot row gives exactly the gathered row).
  """
  if classes.dtype.is_floating:
    return tf.matmul(tf.cast(classes, tf.float32), table)
  return tf.gather(table, classes)


def conditional_batch_norm(x: tf.Tensor, classes: tf.Tensor, gamma, beta, mean, var,
                           epsilon: float) -> tf.Tensor:
  """The conditional batch norm's math: x [B,H,W,C] -> same shape and dtype.

  gamma/beta [num_classes, C] (rows chosen by `class_rows(., classes)`),
  mean/var anything broadcasting to [1,1,1,C]: the batch moments in
  training, the moving statistics in inference (the Keras layer and the
  export's constants both call this). Computed in float32.
  """
  out_dtype = x.dtype
  y = tf.nn.batch_normalization(tf.cast(x, tf.float32), mean, var,
                                class_rows(beta, classes)[:, None, None, :],
                                class_rows(gamma, classes)[:, None, None, :], epsilon)
  return tf.cast(y, out_dtype)


def output_batch_norm(x: tf.Tensor, gamma, beta, mean, var, epsilon: float) -> tf.Tensor:
  """The output batch norm in inference mode: x [B,H,W,C] -> same shape and dtype.

  gamma/beta/mean/var [C]; TF's fused kernel, as the original's
  `contrib.layers.batch_norm` ran. Computed in float32.
  """
  y, _, _ = tf.compat.v1.nn.fused_batch_norm(tf.cast(x, tf.float32), gamma, beta, mean=mean,
                                             variance=var, epsilon=epsilon, is_training=False)
  return tf.cast(y, x.dtype)


class ConditionalBatchNorm(keras.layers.Layer):
  """Class-conditional batch norm: x [B,H,W,C], classes -> [B,H,W,C].

  classes: labels [B] or class weights [B, num_classes] (`class_rows`).
  """

  def __init__(self, num_classes: int, tf1_scope: str, cross_replica: bool = False,
               decay: float = CBN_DECAY, epsilon: float = CBN_EPSILON, **kwargs):
    kwargs.setdefault("name", tf1_scope.replace("/", "__"))
    # Keras would cast float class weights to the compute dtype (bfloat16);
    # x already arrives in it and the variables are float32 (autocast=False).
    kwargs.setdefault("autocast", False)
    super().__init__(**kwargs)
    self.num_classes = num_classes
    self.tf1_scope = tf1_scope
    self.cross_replica = cross_replica
    self.decay = decay
    self.epsilon = epsilon

  def build(self, input_shape):
    c = int(input_shape[-1])
    self.gamma = self.add_weight(name="gamma", shape=(self.num_classes, c),
                                 initializer="ones", dtype="float32", autocast=False)
    self.beta = self.add_weight(name="beta", shape=(self.num_classes, c),
                                initializer="zeros", dtype="float32", autocast=False)
    self.moving_mean = _moving_variable((1, 1, 1, c), "zeros", "mean")
    self.moving_var = _moving_variable((1, 1, 1, c), "ones", "var")

  def call(self, x, classes, training=False):
    if training:
      x32 = tf.cast(x, tf.float32)
      if self.cross_replica:
        mean, var, _ = cross_replica_moments(x32)
      else:
        mean, var = tf.nn.moments(x32, [0, 1, 2], keepdims=True)
      # Python-float decay, as the original: moving * decay + stat * (1 - decay).
      self.moving_mean.assign(self.moving_mean * self.decay + mean * (1 - self.decay))
      self.moving_var.assign(self.moving_var * self.decay + var * (1 - self.decay))
    else:
      mean, var = self.moving_mean, self.moving_var
    return conditional_batch_norm(x, classes, self.gamma, self.beta, mean, var, self.epsilon)

  def tf1_variables(self) -> Dict[str, keras.Variable]:
    return {"gamma": self.gamma, "beta": self.beta, "mean": self.moving_mean,
            "var": self.moving_var}


class OutputBatchNorm(keras.layers.Layer):
  """The last generator batch norm (`g_bn`): x [B,H,W,C] -> [B,H,W,C]."""

  def __init__(self, tf1_scope: str = "g_bn", cross_replica: bool = False,
               decay: float = OUTPUT_BN_DECAY, epsilon: float = OUTPUT_BN_EPSILON,
               **kwargs):
    kwargs.setdefault("name", tf1_scope.replace("/", "__"))
    super().__init__(**kwargs)
    self.tf1_scope = tf1_scope
    self.cross_replica = cross_replica
    self.decay = decay
    self.epsilon = epsilon

  def build(self, input_shape):
    c = int(input_shape[-1])
    self.beta = self.add_weight(name="beta", shape=(c,), initializer="zeros",
                                dtype="float32", autocast=False)
    self.gamma = self.add_weight(name="gamma", shape=(c,), initializer="ones",
                                 dtype="float32", autocast=False)
    self.moving_mean = _moving_variable((c,), "zeros", "moving_mean")
    self.moving_variance = _moving_variable((c,), "ones", "moving_variance")

  def _update(self, variable, value):
    # contrib's assign_moving_average: v -= (v - value) * float32(1 - decay).
    variable.assign_sub((variable - value) * tf.constant(1.0 - self.decay, tf.float32))

  def call(self, x, training=False):
    if not training:
      return output_batch_norm(x, self.gamma, self.beta, self.moving_mean,
                               self.moving_variance, self.epsilon)
    out_dtype = x.dtype
    x = tf.cast(x, tf.float32)
    if self.cross_replica:
      mean, var, n = cross_replica_moments(x)
      y = tf.nn.batch_normalization(x, mean, var, self.beta, self.gamma, self.epsilon)
      self._update(self.moving_mean, tf.reshape(mean, [-1]))
      self._update(self.moving_variance, tf.reshape(var, [-1]) * (n / (n - 1.0)))
    else:
      # The fused kernel returns the Bessel-corrected variance for the update.
      y, mean, var = tf.compat.v1.nn.fused_batch_norm(
          x, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
      self._update(self.moving_mean, mean)
      self._update(self.moving_variance, var)
    return tf.cast(y, out_dtype)

  def tf1_variables(self) -> Dict[str, keras.Variable]:
    return {"beta": self.beta, "gamma": self.gamma, "moving_mean": self.moving_mean,
            "moving_variance": self.moving_variance}
