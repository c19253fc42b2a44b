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


def _norm(x: tf.Tensor) -> tf.Tensor:
  # `** 2` and `** 0.5` as in the original, so that rounding matches it.
  return tf.reduce_sum(x ** 2) ** 0.5


def l2_normalize(x: tf.Tensor, eps: float = 1e-12) -> tf.Tensor:
  """x / (||x||_2 + eps) over the whole tensor (the original's `_l2normalize`)."""
  return x / (_norm(x) + eps)


def _power_iteration_parts(w_mat: tf.Tensor, u: tf.Tensor, eps: float = 1e-12):
  """a = u W^T [1,in], ||a||, v = l2n(a), b = v W [1,out], ||b||, u_new = l2n(b), sigma = b u_new^T."""
  a = tf.matmul(u, w_mat, transpose_b=True)
  norm_a = _norm(a)
  v = a / (norm_a + eps)
  b = tf.matmul(v, w_mat)
  norm_b = _norm(b)
  u_new = b / (norm_b + eps)
  sigma = tf.squeeze(tf.matmul(b, u_new, transpose_b=True))
  return a, norm_a, v, b, norm_b, u_new, sigma


def power_iteration(w_mat: tf.Tensor, u: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """One power iteration: (sigma scalar, u_new [1, out]) for w_mat [in, out], u [1, out]."""
  *_, u_new, sigma = _power_iteration_parts(w_mat, u)
  return sigma, u_new


def _l2_normalize_backward(g, x, norm_x, eps: float = 1e-12) -> tf.Tensor:
  """d<g, l2n(x)>/dx = c g - c^2 <g, x> / ||x|| x, with c = 1 / (||x|| + eps)."""
  c = 1.0 / (norm_x + eps)
  return c * g - (c * c * tf.reduce_sum(g * x) / norm_x) * x


def spectral_norm_backward(w_mat, u, parts, g_w_bar, g_sigma=None, g_u_new=None) -> tf.Tensor:
  """dL/dW [in, out] through W_bar = W / sigma, v, u' and sigma, in one pass per weight.

  The hand-written gradient of `spectral_normalize` (the value autograd gives,
  with no stop-gradient anywhere). g_w_bar, g_sigma, g_u_new: the upstream
  gradients of its three outputs (g_sigma, g_u_new None when unused). With
  s = g_sigma - <g_w_bar, W> / sigma^2 (all of sigma's gradient),
      g_b = s u' + l2n'(b)^T (s b + g_u_new),   g_a = l2n'(a)^T (g_b W^T),
      dW  = g_w_bar / sigma + [v; g_a]^T [g_b; u]     (one [in,2] @ [2,out] matmul).
  `u` is a non-trainable variable that is only assigned: it gets no gradient.
  """
  a, norm_a, v, b, norm_b, u_new, sigma = parts
  s = -tf.reduce_sum(g_w_bar * w_mat) / (sigma * sigma)
  if g_sigma is not None:
    s = s + g_sigma
  if g_u_new is None:
    # s b is parallel to b, so l2n'(b)^T (s b) = s (c - c^2 ||b||) b, c = 1 / (||b|| + eps):
    # g_b is a scalar times b.
    c = 1.0 / (norm_b + 1e-12)
    g_b = (s * c * (2.0 - c * norm_b)) * b
  else:
    g_b = s * u_new + _l2_normalize_backward(s * b + g_u_new, b, norm_b)
  g_a = _l2_normalize_backward(tf.matmul(g_b, w_mat, transpose_b=True), a, norm_a)
  return g_w_bar / sigma + tf.matmul(tf.concat([v, g_a], 0), tf.concat([g_b, u], 0),
                                     transpose_a=True)


@tf.custom_gradient
def _normalize_matrix(w_mat: tf.Tensor, u: tf.Tensor):
  """(W_bar [in, out], sigma, u_new [1, out]) with the folded gradient above.

  Autograd of the power iteration makes 12 matmuls per weight and a reduction
  and reshape for each broadcasting division, power and norm; the folded form
  makes 5 matmuls and fewer passes over the weights (12-14% less peak memory
  at batch 8; BUILD_NOTES "Spectral normalisation's backward, folded").
  """
  parts = _power_iteration_parts(w_mat, u)
  u_new, sigma = parts[-2:]
  w_bar = w_mat / sigma

  def grad(g_w_bar, g_sigma, g_u_new):
    if g_w_bar is None:
      g_w_bar = tf.zeros_like(w_mat)
    return spectral_norm_backward(w_mat, u, parts, g_w_bar, g_sigma, g_u_new), None

  return (w_bar, sigma, u_new), grad


def spectral_normalize(w: tf.Tensor, u: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """(W_bar, sigma, u_new) for a weight w of any rank (last axis = outputs)."""
  shape = tf.shape(w)
  w_bar, sigma, u_new = _normalize_matrix(tf.reshape(w, [-1, w.shape[-1]]), u)
  return tf.reshape(w_bar, shape), sigma, u_new


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
