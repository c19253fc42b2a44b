"""Spectral-normalised layers with the original code's semantics.

Original: `ops.spectral_normed_weight` (brain-research self-attention-gan).
A weight W of any rank is viewed as `W_mat = reshape(W, [-1, out])`; a
non-trainable `u` [1, out] drives one power iteration per call:

    v     = l2n(u @ W_mat^T)        [1, in]
    u'    = l2n(v @ W_mat)          [1, out]
    sigma = v @ W_mat @ u'^T        scalar
    W_bar = W / sigma

with no stop-gradient anywhere (the gradient reaches W through v, u' and sigma
too) and `u <- u'` assigned only when the call says `update_u=True`.

This is NOT `keras.layers.SpectralNormalization`, which overwrites the kernel
with W / sigma and cuts the gradient through sigma.

The power iteration always runs in float32, also under bfloat16 mixed
precision; only the normalised kernel is cast to the compute dtype.
"""

from __future__ import annotations

from typing import Dict, Tuple

import keras
import tensorflow as tf

from sagan_tf.layers.fast_conv import ConvPolicy, conv2d_same
from sagan_tf.layers.upsample_conv import upsample_conv3x3


def l2_normalize(x: tf.Tensor, eps: float = 1e-12) -> tf.Tensor:
  """x / (||x||_2 + eps) over the whole tensor (the original's `_l2normalize`)."""
  # `** 2` and `** 0.5` as in the original, so that rounding matches it.
  return x / (tf.reduce_sum(x ** 2) ** 0.5 + eps)


def power_iteration(w_mat: tf.Tensor, u: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """One power iteration: (sigma scalar, u_new [1, out]) for w_mat [in, out], u [1, out]."""
  v = l2_normalize(tf.matmul(u, w_mat, transpose_b=True))
  u_new = l2_normalize(tf.matmul(v, w_mat))
  sigma = tf.squeeze(tf.matmul(tf.matmul(v, w_mat), u_new, transpose_b=True))
  return sigma, u_new


def spectral_normalize(w: tf.Tensor, u: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """(W_bar, sigma, u_new) for a weight w of any rank (last axis = outputs)."""
  shape = tf.shape(w)
  w_mat = tf.reshape(w, [-1, w.shape[-1]])
  sigma, u_new = power_iteration(w_mat, u)
  return tf.reshape(w_mat / sigma, shape), sigma, u_new


def conv(x: tf.Tensor, kernel: tf.Tensor, bias=None,
         policy: ConvPolicy = ConvPolicy(), upsample: bool = False) -> tf.Tensor:
  """x [B,H,W,Cin] conv kernel [k,k,Cin,Cout] (stride 1, SAME) + bias [Cout] -> [B,H,W,Cout].

  upsample=True: x is first upsampled 2x (nearest), output [B,2H,2W,Cout]
  (`upsample_conv.upsample_conv3x3`, 3x3 kernels). The math of `SNConv2D`
  after normalisation, also run by the export with a folded constant kernel
  W / sigma. The bias is cast to x's dtype. `policy` picks the gradient
  kernels (fast_conv.py) and with them the upsampling form; the forward
  values do not depend on it beyond float rounding.
  """
  y = upsample_conv3x3(x, kernel, policy) if upsample else conv2d_same(x, kernel, policy)
  return y if bias is None else tf.nn.bias_add(y, tf.cast(bias, y.dtype))


def dense(x: tf.Tensor, matrix: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
  """x [B,in] @ matrix [in,out] + bias [out] -> [B,out] (`SNDense` after normalisation)."""
  return tf.matmul(x, matrix) + tf.cast(bias, x.dtype)


def u_variable(out_dim: int, name: str = "u") -> keras.Variable:
  """The power-iteration vector [1, out]: truncated normal, stddev 1 (TF1 default).

  Synchronisation ON_READ with ONLY_FIRST_REPLICA aggregation: `u'` depends
  only on W and u, never on data, so every replica computes the same `u'`
  from mirrored weights and keeps its own copy without any cross-replica
  communication; a checkpoint saves replica 0's copy and a restore writes
  all copies (BUILD_NOTES.md, "`u` vectors: ON_READ, ONLY_FIRST_REPLICA").
  """
  return keras.Variable(
      initializer=keras.initializers.TruncatedNormal(mean=0.0, stddev=1.0),
      shape=(1, out_dim), dtype="float32", trainable=False, autocast=False,
      aggregation="only_first_replica", synchronization="on_read", name=name)


class SNLayer(keras.layers.Layer):
  """Base: owns `u`, normalises a float32 kernel, assigns `u` on request.

  Subclasses set `self.tf1_scope` (the original variable scope, e.g.
  "g_block1/snconv1") and implement `tf1_variables()`.
  """

  def __init__(self, tf1_scope: str, **kwargs):
    kwargs.setdefault("name", tf1_scope.replace("/", "__"))
    super().__init__(**kwargs)
    self.tf1_scope = tf1_scope

  def normalized(self, w, update_u: bool) -> tf.Tensor:
    """W / sigma in the compute dtype; assigns u <- u' when update_u."""
    w_bar, _, u_new = spectral_normalize(tf.convert_to_tensor(w), tf.convert_to_tensor(self.u))
    if update_u:
      self.u.assign(u_new)
    return tf.cast(w_bar, self.compute_dtype)

  def sigma(self) -> tf.Tensor:
    """Current spectral-norm estimate (one iteration from u; does not assign)."""
    _, sigma, _ = spectral_normalize(tf.convert_to_tensor(self.kernel_variable),
                                     tf.convert_to_tensor(self.u))
    return sigma

  @property
  def kernel_variable(self):
    """The weight whose last axis is the output axis (what `u` iterates on)."""
    raise NotImplementedError

  def tf1_variables(self) -> Dict[str, keras.Variable]:
    raise NotImplementedError


class SNConv2D(SNLayer):
  """Spectral-normalised conv, stride 1, SAME (`ops.snconv2d` / `sn_conv1x1`).

  Input [B, H, W, Cin] -> [B, H, W, filters] ([B, 2H, 2W, filters] with
  upsample=True: nearest 2x upsampling first, `conv`). Variables `w`
  [k, k, Cin, filters] (Glorot uniform), `biases` [filters] (zeros, when
  use_bias), `u` [1, filters]. `conv_policy` (fast_conv.ConvPolicy) picks the
  gradient kernels when the call is traced; the models set it from the config.
  """

  def __init__(self, filters: int, kernel_size: int, tf1_scope: str,
               use_bias: bool = True, **kwargs):
    super().__init__(tf1_scope, **kwargs)
    self.filters = filters
    self.kernel_size = kernel_size
    self.use_bias = use_bias
    self.conv_policy = ConvPolicy()

  def build(self, input_shape):
    k = self.kernel_size
    self.w = self.add_weight(
        name="w", shape=(k, k, int(input_shape[-1]), self.filters),
        initializer=keras.initializers.GlorotUniform(), dtype="float32", autocast=False)
    self.u = u_variable(self.filters)
    if self.use_bias:
      self.biases = self.add_weight(name="biases", shape=(self.filters,),
                                    initializer="zeros", dtype="float32", autocast=False)

  @property
  def kernel_variable(self):
    return self.w

  def call(self, x, update_u=True, upsample=False):
    # The backward kernels per conv_policy (fast_conv.py).
    return conv(x, self.normalized(self.w, update_u), self.biases if self.use_bias else None,
                self.conv_policy, upsample)

  def tf1_variables(self):
    out = {"w": self.w, "u": self.u}
    if self.use_bias:
      out["biases"] = self.biases
    return out


class SNDense(SNLayer):
  """Spectral-normalised linear layer (`ops.snlinear`): [B, in] -> [B, units].

  Variables `Matrix` [in, units] (Glorot uniform), `bias` [units] (zeros), `u`.
  """

  def __init__(self, units: int, tf1_scope: str, **kwargs):
    super().__init__(tf1_scope, **kwargs)
    self.units = units

  def build(self, input_shape):
    self.matrix = self.add_weight(
        name="Matrix", shape=(int(input_shape[-1]), self.units),
        initializer=keras.initializers.GlorotUniform(), dtype="float32", autocast=False)
    self.u = u_variable(self.units)
    self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros",
                                dtype="float32", autocast=False)

  @property
  def kernel_variable(self):
    return self.matrix

  def call(self, x, update_u=True):
    return dense(x, self.normalized(self.matrix, update_u), self.bias)

  def tf1_variables(self):
    return {"Matrix": self.matrix, "u": self.u, "bias": self.bias}


class SNEmbedding(SNLayer):
  """Spectral-normalised class embedding (`ops.sn_embedding`): labels [B] -> [B, dim].

  The map [num_classes, dim] (Glorot uniform) is normalised on its transpose,
  as the original does, so `u` has shape [1, num_classes].
  """

  def __init__(self, num_classes: int, dim: int, tf1_scope: str, **kwargs):
    super().__init__(tf1_scope, **kwargs)
    self.num_classes = num_classes
    self.dim = dim

  def build(self, input_shape):
    self.embedding_map = self.add_weight(
        name="embedding_map", shape=(self.num_classes, self.dim),
        initializer=keras.initializers.GlorotUniform(), dtype="float32", autocast=False)
    self.u = u_variable(self.num_classes)

  @property
  def kernel_variable(self):
    return tf.transpose(self.embedding_map)

  def call(self, labels, update_u=True):
    w_bar_t = self.normalized(tf.transpose(self.embedding_map), update_u)
    return tf.gather(tf.transpose(w_bar_t), labels)

  def tf1_variables(self):
    return {"embedding_map": self.embedding_map, "u": self.u}
