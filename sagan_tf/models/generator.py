"""Class-conditional ResNet generator (original `generator.generator_test`).

z [B, z_dim] -> `g_snh0` SN linear to 4*4*C0 -> reshape [B,4,4,C0]
-> up blocks `g_block1..n` (each doubles H, W) with self-attention after the
blocks whose output resolution is in cfg.g_attention_res (`g_non_local`)
-> `g_bn` batch norm -> ReLU -> `g_snconv_last` 3x3 conv to 3 -> tanh.

At 128x128 with gf_dim 64: channels 1024 (4x4), 1024, 512, 256, 128, 64;
42,078,852 trainable parameters.

The architecture is written once, as functions of (weights, inputs):
`generator_forward` -> `up_block` / `layers.attention.self_attention` ->
`output_head`. The Keras model below runs them with its stateful layers
(training, `u` updates); `sagan_tf.export` runs them with folded constants;
class weights instead of labels give the class interpolation.
"""

from __future__ import annotations

import functools
from typing import Callable, Dict, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from sagan_tf.layers.attention import SelfAttention
from sagan_tf.layers.conditional_bn import ConditionalBatchNorm, OutputBatchNorm
from sagan_tf.layers.spectral_norm import SNConv2D, SNDense
from sagan_tf.layers.upsample_conv import upsample_2x
from sagan_tf.models.common import TF1NamedModel, dtype_policy


Op = Callable[[tf.Tensor], tf.Tensor]
# A stage of the up path: (x, classes) -> (x, attention probabilities or None).
Stage = Callable[[tf.Tensor, tf.Tensor], Tuple[tf.Tensor, Optional[tf.Tensor]]]


# ------------------------------------------------------------ the architecture
# Pure functions of (weights, inputs). A weight that the Keras model computes
# with state (W / sigma with a `u` update, batch norm with moving-statistic
# updates) is passed as a callable: the Keras layers pass their own calls,
# the export (sagan_tf/export.py) folded constants. Both run this code.
def up_block(x: tf.Tensor, cbn_0: Op, up_snconv1: Op, cbn_1: Op, snconv2: Op,
             snconv3: Op) -> tf.Tensor:
  """Residual up block: x [B,H,W,Cin] -> [B,2H,2W,Cout].

  x0 = x; x = relu(cbn_0(x)); x = snconv1 3x3 (up(x)); x = relu(cbn_1(x));
  x = snconv2 3x3; return snconv3_1x1(up(x0)) + x (computed as up(snconv3_1x1(x0))).
  up_snconv1 upsamples and convolves in one (`SNConv2D(..., upsample=True)`:
  sub-pixel form where the gradient policy allows, BUILD_NOTES.md, "Speed").
  The batch norms already hold the example's class parameters.
  """
  x0 = x
  x = tf.nn.relu(cbn_0(x))
  x = up_snconv1(x)
  x = tf.nn.relu(cbn_1(x))
  x = snconv2(x)
  # The original's snconv3(up(x0)). A 1x1 conv acts on each pixel alone, so
  # it commutes with nearest-neighbour upsampling: up(snconv3(x0)) is the same
  # values at a quarter of the FLOPs (BUILD_NOTES.md, "Speed").
  return upsample_2x(snconv3(x0)) + x


def output_head(x: tf.Tensor, g_bn: Op, g_snconv_last: Op) -> tf.Tensor:
  """x [B,S,S,C] -> tanh(g_snconv_last(relu(g_bn(x)))) float32 [B,S,S,3] in [-1, 1]."""
  x = g_snconv_last(tf.nn.relu(g_bn(x)))
  return tf.tanh(tf.cast(x, tf.float32))


def generator_forward(z: tf.Tensor, classes: tf.Tensor, g_snh0: Op,
                      stages: Sequence[Tuple[str, Stage]], g_bn: Op, g_snconv_last: Op,
                      base_channels: int) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
  """The whole generator: (images float32 [B,S,S,3], {attention scope: probabilities}).

  z [B, z_dim]; classes: labels [B] int32 or class weights [B, num_classes]
  float32 (`layers.conditional_bn.class_rows`); stages: (TF1 scope,
  callable) in order, up blocks and self-attention blocks.
  """
  x = tf.reshape(g_snh0(z), [-1, 4, 4, base_channels])
  attention = {}
  for scope, stage in stages:
    x, probs = stage(x, classes)
    if probs is not None:
      attention[scope] = probs
  return output_head(x, g_bn, g_snconv_last), attention


def as_classes(classes) -> tf.Tensor:
  """labels -> int32 [B]; class weights (float, rank 2) -> float32 [B, num_classes]."""
  classes = tf.convert_to_tensor(classes)
  if classes.dtype.is_floating and classes.shape.rank == 2:
    return tf.cast(classes, tf.float32)
  return tf.cast(classes, tf.int32)


# ------------------------------------------------------------ Keras layers
class GeneratorBlock(keras.layers.Layer):
  """`up_block` with its variables: x [B,H,W,Cin], classes -> [B,2H,2W,Cout]."""

  def __init__(self, out_channels: int, num_classes: int, tf1_scope: str,
               cross_replica_bn: bool = False, bn_decay: float = 0.999, **kwargs):
    kwargs.setdefault("name", tf1_scope)
    kwargs.setdefault("autocast", False)  # float class weights stay float32 (ConditionalBatchNorm)
    super().__init__(**kwargs)
    p = dict(dtype=self.dtype_policy)
    bn = dict(cross_replica=cross_replica_bn, decay=bn_decay, **p)
    self.cbn_0 = ConditionalBatchNorm(num_classes, f"{tf1_scope}/cbn_0", **bn)
    self.snconv1 = SNConv2D(out_channels, 3, f"{tf1_scope}/snconv1", **p)
    self.cbn_1 = ConditionalBatchNorm(num_classes, f"{tf1_scope}/cbn_1", **bn)
    self.snconv2 = SNConv2D(out_channels, 3, f"{tf1_scope}/snconv2", **p)
    self.snconv3 = SNConv2D(out_channels, 1, f"{tf1_scope}/snconv3", **p)

  def call(self, x, classes, training=False, update_u=True):
    bn = functools.partial(_call, classes=classes, training=training)
    sn = functools.partial(_call, update_u=update_u)
    return up_block(x, bn(self.cbn_0), sn(self.snconv1, upsample=True), bn(self.cbn_1),
                    sn(self.snconv2), sn(self.snconv3))


def _call(layer, **kwargs) -> Op:
  """layer as a one-tensor callable with its keyword arguments bound."""
  return lambda x: layer(x, **kwargs)


class Generator(TF1NamedModel):
  """generator(z [B,z_dim], classes, training=, update_u=) -> images [B,S,S,3] in [-1, 1].

  classes: labels [B] int, or class weights [B, num_classes] float (each
  example's conditional batch norms use the weighted mix of the class rows
  of gamma and beta; one-hot weights equal the labels).
  `update_u` (default True, as the original, whose G assigns `u` on every
  forward pass, training or inference) controls only the assignment: the
  output always uses one power iteration from the stored `u`.
  With return_attention=True also returns {layer name: probabilities}.
  Images are float32 whatever the compute precision.
  """

  def __init__(self, cfg, **kwargs):
    # autocast=False: float class weights stay float32; call() casts z itself.
    super().__init__(name="generator", dtype=dtype_policy(cfg), autocast=False, **kwargs)
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

  def _stage(self, stage, training, update_u) -> Tuple[str, Stage]:
    if isinstance(stage, SelfAttention):
      return stage.tf1_scope, lambda x, _: stage(x, update_u=update_u, return_attention=True)
    return stage.name, lambda x, c: (stage(x, c, training=training, update_u=update_u), None)

  def call(self, z, classes, training=False, update_u=True, return_attention=False):
    images, attention = generator_forward(
        z, as_classes(classes),
        lambda t: self.g_snh0(tf.cast(t, self.compute_dtype), update_u=update_u),
        [self._stage(s, training, update_u) for s in self.stages],
        _call(self.g_bn, training=training), _call(self.g_snconv_last, update_u=update_u),
        self.base_channels)
    return (images, attention) if return_attention else images


def build_generator(cfg) -> Generator:
  """A built generator for cfg (variables exist; nothing assigned)."""
  g = Generator(cfg)
  z = tf.zeros([2, cfg.z_dim])
  g(z, tf.zeros([2], tf.int32), training=False, update_u=False)
  return g
