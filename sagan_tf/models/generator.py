"""Class-conditional ResNet generator (original `generator.generator_test`).

z [B, z_dim] -> `g_snh0` SN linear to 4*4*C0 -> reshape [B,4,4,C0]
-> up blocks `g_block1..n` (each doubles H, W) with self-attention after the
blocks whose output resolution is in cfg.g_attention_res (`g_non_local`)
-> `g_bn` batch norm -> ReLU -> `g_snconv_last` 3x3 conv to 3 -> tanh.

At 128x128 with gf_dim 64: channels 1024 (4x4), 1024, 512, 256, 128, 64;
42,078,852 trainable parameters.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from sagan_tf.layers.attention import SelfAttention
from sagan_tf.layers.conditional_bn import ConditionalBatchNorm, OutputBatchNorm
from sagan_tf.layers.spectral_norm import SNConv2D, SNDense
from sagan_tf.models.common import TF1NamedModel, dtype_policy, upsample_2x


class GeneratorBlock(keras.layers.Layer):
  """Residual up block: x [B,H,W,Cin], labels [B] -> [B,2H,2W,Cout].

  x0 = x; x = relu(cbn_0(x, y)); up; x = snconv1 3x3; x = relu(cbn_1(x, y));
  x = snconv2 3x3; return snconv3_1x1(up(x0)) + x (computed as up(snconv3_1x1(x0))).
  """

  def __init__(self, out_channels: int, num_classes: int, tf1_scope: str,
               cross_replica_bn: bool = False, bn_decay: float = 0.999, **kwargs):
    kwargs.setdefault("name", tf1_scope)
    super().__init__(**kwargs)
    p = dict(dtype=self.dtype_policy)
    bn = dict(cross_replica=cross_replica_bn, decay=bn_decay, **p)
    self.cbn_0 = ConditionalBatchNorm(num_classes, f"{tf1_scope}/cbn_0", **bn)
    self.snconv1 = SNConv2D(out_channels, 3, f"{tf1_scope}/snconv1", **p)
    self.cbn_1 = ConditionalBatchNorm(num_classes, f"{tf1_scope}/cbn_1", **bn)
    self.snconv2 = SNConv2D(out_channels, 3, f"{tf1_scope}/snconv2", **p)
    self.snconv3 = SNConv2D(out_channels, 1, f"{tf1_scope}/snconv3", **p)

  def call(self, x, labels, training=False, update_u=True):
    x0 = x
    x = tf.nn.relu(self.cbn_0(x, labels, training=training))
    x = self.snconv1(upsample_2x(x), update_u=update_u)
    x = tf.nn.relu(self.cbn_1(x, labels, training=training))
    x = self.snconv2(x, update_u=update_u)
    # The original's snconv3(up(x0)). A 1x1 conv acts on each pixel alone, so
    # it commutes with nearest-neighbour upsampling: up(snconv3(x0)) is the same
    # values at a quarter of the FLOPs (notes_speed.md).
    return upsample_2x(self.snconv3(x0, update_u=update_u)) + x


class Generator(TF1NamedModel):
  """generator(z [B,z_dim], labels [B] int, training=, update_u=) -> images [B,S,S,3] in [-1, 1].

  `update_u` (default True, as the original, whose G assigns `u` on every
  forward pass, training or inference) controls only the assignment: the
  output always uses one power iteration from the stored `u`.
  With return_attention=True also returns {layer name: probabilities}.
  Images are float32 whatever the compute precision.
  """

  def __init__(self, cfg, **kwargs):
    super().__init__(name="generator", dtype=dtype_policy(cfg), **kwargs)
    self.cfg = cfg
    p = dict(dtype=self.dtype_policy)
    mults = cfg.g_mults
    self.base_channels = cfg.gf_dim * mults[0]
    self.g_snh0 = SNDense(4 * 4 * self.base_channels, "g_snh0", **p)
    self.stages = []
    attn_res = tuple(cfg.g_attention_res)
    for i, m in enumerate(mults):
      self.stages.append(GeneratorBlock(cfg.gf_dim * m, cfg.num_classes, f"g_block{i + 1}",
                                        cfg.cross_replica_bn, cfg.cbn_decay, **p))
      res = 4 * 2 ** (i + 1)
      if res in attn_res:
        scope = "g_non_local" if len(attn_res) == 1 else f"g_non_local_{res}"
        self.stages.append(SelfAttention(cfg.gf_dim * m, scope, cfg.attention_variant, **p))
    self.g_bn = OutputBatchNorm("g_bn", cfg.cross_replica_bn, decay=cfg.output_bn_decay, **p)
    self.g_snconv_last = SNConv2D(3, 3, "g_snconv_last", **p)
    self.use_conv_policy(cfg)

  def call(self, z, labels, training=False, update_u=True, return_attention=False):
    labels = tf.cast(labels, tf.int32)
    x = self.g_snh0(tf.cast(z, self.compute_dtype), update_u=update_u)
    x = tf.reshape(x, [-1, 4, 4, self.base_channels])
    attention = {}
    for stage in self.stages:
      if isinstance(stage, SelfAttention):
        if return_attention:
          x, attention[stage.tf1_scope] = stage(x, update_u=update_u, return_attention=True)
        else:
          x = stage(x, update_u=update_u)
      else:
        x = stage(x, labels, training=training, update_u=update_u)
    x = tf.nn.relu(self.g_bn(x, training=training))
    x = self.g_snconv_last(x, update_u=update_u)
    images = tf.tanh(tf.cast(x, tf.float32))
    return (images, attention) if return_attention else images


def build_generator(cfg) -> Generator:
  """A built generator for cfg (variables exist; nothing assigned)."""
  g = Generator(cfg)
  z = tf.zeros([2, cfg.z_dim])
  g(z, tf.zeros([2], tf.int32), training=False, update_u=False)
  return g
