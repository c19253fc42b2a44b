"""The self-attention block: `out = x + gamma * o`, gamma a scalar starting at 0.

Two variants (SPEC.md, "Self-attention block"):

* "original" (non_local.sn_non_local_block_sim, the released code's block):
  theta = conv1x1(x, C/8) over all N = H*W positions; phi = maxpool2x2(conv1x1
  (x, C/8)) and g = maxpool2x2(conv1x1(x, C/2)) over N/4 pooled keys;
  attn = softmax(theta phi^T) [B, N, N/4]; o = conv1x1(attn g, C).
  TF1 scopes: sn_conv_theta, sn_conv_phi, sn_conv_g, sn_conv_attn, sigma_ratio.
* "paper" (Section 3 of the paper): f, g, h = conv1x1(x, C/8) over all
  positions; attn = softmax(f g^T) [B, N, N]; o = v(attn h) with v a 1x1 conv
  back to C. Scopes: sn_conv_f, sn_conv_g, sn_conv_h, sn_conv_v, sigma_ratio.

All convolutions are spectral-normalised and bias-free. The attention logits
and softmax are computed in float32 also under bfloat16 compute.
"""

from __future__ import annotations

import functools
from typing import Callable, Dict, Tuple

import keras
import tensorflow as tf

from sagan_tf.layers.spectral_norm import SNConv2D

VARIANTS = ("original", "paper")
Conv = Callable[[tf.Tensor], tf.Tensor]


def _max_pool_2x2(x: tf.Tensor) -> tf.Tensor:
  return tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID")


def attend(queries: tf.Tensor, keys: tf.Tensor, values: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """softmax(queries keys^T) values: ([B,Nq,Cv] output, [B,Nq,Nk] float32 probabilities).

  queries [B,Nq,Ck], keys [B,Nk,Ck], values [B,Nk,Cv]; the softmax runs over
  the key axis in float32.
  """
  logits = tf.matmul(queries, keys, transpose_b=True)
  probs = tf.nn.softmax(tf.cast(logits, tf.float32))
  return tf.matmul(tf.cast(probs, values.dtype), values), probs


def self_attention(x: tf.Tensor, query: Conv, key: Conv, value: Conv, out: Conv, gamma,
                   variant: str = "original") -> Tuple[tf.Tensor, tf.Tensor]:
  """The block's math: x [B,H,W,C] -> (x + gamma * o [B,H,W,C], float32 probabilities).

  query/key/value/out are the four bias-free 1x1 convolutions as callables
  [B,H,W,Cin] -> [B,H,W,Cout] (the Keras layer passes its SNConv2D calls,
  the export folded constant kernels); gamma is the scalar `sigma_ratio`.
  Probabilities are [B, H*W, H*W/4] for "original" (keys on the 2x2-pooled
  grid, row-major) and [B, H*W, H*W] for "paper"; rows sum to 1.
  """
  b, h, w, _ = x.shape
  b = tf.shape(x)[0] if b is None else b
  q, k, v = query(x), key(x), value(x)
  if variant == "original":
    k, v = _max_pool_2x2(k), _max_pool_2x2(v)
  nk = k.shape[1] * k.shape[2]
  o, probs = attend(tf.reshape(q, [b, h * w, q.shape[-1]]),
                    tf.reshape(k, [b, nk, k.shape[-1]]),
                    tf.reshape(v, [b, nk, v.shape[-1]]))
  o = out(tf.reshape(o, [b, h, w, v.shape[-1]]))
  return x + tf.cast(gamma, x.dtype) * o, probs


class SelfAttention(keras.layers.Layer):
  """x [B,H,W,C] -> x + gamma * o [B,H,W,C]; optionally also the probabilities.

  Probabilities are [B, H*W, H*W/4] for "original" (keys on the 2x2-pooled
  grid, row-major) and [B, H*W, H*W] for "paper"; rows (queries) sum to 1.
  """

  def __init__(self, channels: int, tf1_scope: str, variant: str = "original", **kwargs):
    if variant not in VARIANTS:
      raise ValueError(f"attention variant {variant!r} is not one of {VARIANTS}")
    if channels // 8 < 1:
      raise ValueError(f"self-attention at {channels} channels would have "
                       f"{channels // 8} query channels; it needs >= 8 channels")
    kwargs.setdefault("name", tf1_scope.replace("/", "__"))
    super().__init__(**kwargs)
    self.channels = channels
    self.variant = variant
    self.tf1_scope = tf1_scope
    c8 = channels // 8
    sub = dict(use_bias=False, dtype=self.dtype_policy)
    if variant == "original":
      self.query_conv = SNConv2D(c8, 1, f"{tf1_scope}/sn_conv_theta", **sub)
      self.key_conv = SNConv2D(c8, 1, f"{tf1_scope}/sn_conv_phi", **sub)
      self.value_conv = SNConv2D(channels // 2, 1, f"{tf1_scope}/sn_conv_g", **sub)
      self.out_conv = SNConv2D(channels, 1, f"{tf1_scope}/sn_conv_attn", **sub)
    else:
      self.query_conv = SNConv2D(c8, 1, f"{tf1_scope}/sn_conv_f", **sub)
      self.key_conv = SNConv2D(c8, 1, f"{tf1_scope}/sn_conv_g", **sub)
      self.value_conv = SNConv2D(c8, 1, f"{tf1_scope}/sn_conv_h", **sub)
      self.out_conv = SNConv2D(channels, 1, f"{tf1_scope}/sn_conv_v", **sub)

  def build(self, input_shape):
    self.gamma = self.add_weight(name="sigma_ratio", shape=(), initializer="zeros",
                                 dtype="float32", autocast=False)

  def call(self, x, update_u=True, return_attention=False):
    out, probs = self_attention(
        x, *(functools.partial(conv, update_u=update_u) for conv in (
            self.query_conv, self.key_conv, self.value_conv, self.out_conv)),
        self.gamma, self.variant)
    return (out, probs) if return_attention else out

  def tf1_variables(self) -> Dict[str, keras.Variable]:
    """This layer's own variable; the four convolutions report theirs."""
    return {"sigma_ratio": self.gamma}
