"""ResNet projection discriminator (original `discriminator.discriminator_test`).

images [B,S,S,3] -> `d_optimized_block1` (downsamples) -> `d_block2..n`
(downsample) -> a last block without downsampling -> ReLU -> sum over H, W
-> h [B, C] -> logit = `d_sn_linear`(h) + sum(h * `d_embedding`(y)) (projection).
Self-attention (`d_non_local`) after the blocks whose output resolution is in
cfg.d_attention_res. At 128x128 with df_dim 64: channels 64, 128, 256, 512,
1024, 1024; 39,463,618 trainable parameters.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from sagan_tf.layers.attention import SelfAttention
from sagan_tf.layers.spectral_norm import SNConv2D, SNDense, SNEmbedding
from sagan_tf.models.common import TF1NamedModel, avg_pool_2x, dtype_policy


class DiscriminatorBlock(keras.layers.Layer):
  """x [B,H,W,Cin] -> [B,H/2,W/2,Cout] (or [B,H,W,Cout] without downsampling).

  optimized=True (first block): x = pool(sn_conv2(relu(sn_conv1(x)))) +
  sn_conv3(pool(x)) (pool, then conv). Otherwise: x = sn_conv2(relu(sn_conv1(
  relu(x)))), pooled when downsampling; shortcut sn_conv3(x0) then pool, only
  when downsampling or Cin != Cout.
  """

  def __init__(self, in_channels: int, out_channels: int, tf1_scope: str,
               downsample: bool = True, optimized: bool = False, **kwargs):
    kwargs.setdefault("name", tf1_scope)
    super().__init__(**kwargs)
    self.out_channels = out_channels
    self.tf1_scope = tf1_scope
    self.downsample = downsample
    self.optimized = optimized
    p = dict(dtype=self.dtype_policy)
    self.sn_conv1 = SNConv2D(out_channels, 3, f"{tf1_scope}/sn_conv1", **p)
    self.sn_conv2 = SNConv2D(out_channels, 3, f"{tf1_scope}/sn_conv2", **p)
    self.sn_conv3 = None
    if optimized or downsample or in_channels != out_channels:
      self.sn_conv3 = SNConv2D(out_channels, 1, f"{tf1_scope}/sn_conv3", **p)

  def call(self, x, update_u=True):
    x0 = x
    if not self.optimized:
      x = tf.nn.relu(x)
    x = self.sn_conv1(x, update_u=update_u)
    x = self.sn_conv2(tf.nn.relu(x), update_u=update_u)
    if self.optimized:
      return avg_pool_2x(x) + self.sn_conv3(avg_pool_2x(x0), update_u=update_u)
    if self.downsample:
      x = avg_pool_2x(x)
    if self.sn_conv3 is not None:
      x0 = self.sn_conv3(x0, update_u=update_u)
      if self.downsample:
        x0 = avg_pool_2x(x0)
    return x0 + x


class Discriminator(TF1NamedModel):
  """discriminator(images [B,S,S,3] in [-1,1], labels [B], training=, update_u=) -> logits [B] float32.

  `update_u=True` (D on real data) assigns each `u` <- u'; False (D on
  generated data, the original's update_collection="NO_OPS") leaves them.
  Both use one power iteration from the current `u`. `training` is accepted
  for a uniform signature; the discriminator has no batch norm.
  The final linear and the projection run in float32.
  """

  def __init__(self, cfg, **kwargs):
    super().__init__(name="discriminator", dtype=dtype_policy(cfg), **kwargs)
    self.cfg = cfg
    p = dict(dtype=self.dtype_policy)
    mults = cfg.d_mults
    attn_res = tuple(cfg.d_attention_res)
    self.stages = []
    placed = set()
    in_channels = 3
    for i, m in enumerate(mults):
      last = i == len(mults) - 1
      scope = "d_optimized_block1" if i == 0 else f"d_block{i + 1}"
      self.stages.append(DiscriminatorBlock(in_channels, cfg.df_dim * m, scope,
                                            downsample=not last, optimized=i == 0, **p))
      in_channels = cfg.df_dim * m
      res = cfg.image_size // 2 ** (i + 1) if not last else cfg.image_size // 2 ** i
      if res in attn_res and res not in placed:
        placed.add(res)
        name = "d_non_local" if len(attn_res) == 1 else f"d_non_local_{res}"
        self.stages.append(SelfAttention(cfg.df_dim * m, name, cfg.attention_variant, **p))
    self.h_channels = cfg.df_dim * mults[-1]
    self.d_sn_linear = SNDense(1, "d_sn_linear", dtype="float32")
    self.d_embedding = SNEmbedding(cfg.num_classes, self.h_channels, "d_embedding",
                                   dtype="float32")
    self.use_conv_policy(cfg)

  def call(self, images, labels, training=False, update_u=True):
    x = tf.cast(images, self.compute_dtype)
    for stage in self.stages:
      x = stage(x, update_u=update_u)
    h = tf.reduce_sum(tf.cast(tf.nn.relu(x), tf.float32), axis=[1, 2])
    logits = self.d_sn_linear(h, update_u=update_u)
    emb = self.d_embedding(tf.cast(labels, tf.int32), update_u=update_u)
    logits += tf.reduce_sum(h * emb, axis=1, keepdims=True)
    return tf.squeeze(logits, axis=1)


def build_discriminator(cfg) -> Discriminator:
  """A built discriminator for cfg (variables exist; nothing assigned)."""
  d = Discriminator(cfg)
  s = cfg.image_size
  d(tf.zeros([2, s, s, 3]), tf.zeros([2], tf.int32), training=False, update_u=False)
  return d
