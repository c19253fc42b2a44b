"""What the generator and discriminator share: dtype policy, TF1 names, building."""

from __future__ import annotations

from typing import Dict

import keras
import tensorflow as tf

from sagan_tf.layers.attention import SelfAttention
from sagan_tf.layers.fast_conv import ConvPolicy
from sagan_tf.layers.spectral_norm import SNConv2D, SNLayer

TF1_ROOT = "model"


def dtype_policy(cfg) -> str:
  """Keras dtype policy for cfg.precision: variables float32, compute float32 or bfloat16."""
  return "mixed_bfloat16" if cfg.precision == "bfloat16" else "float32"


def avg_pool_2x(x: tf.Tensor) -> tf.Tensor:
  """2x2 average pooling, stride 2, VALID (the original's `dsample`)."""
  return tf.nn.avg_pool2d(x, ksize=2, strides=2, padding="VALID")


class TF1NamedModel(keras.Model):
  """A Keras model whose leaf layers know their original TF1 variable scope."""

  def tf1_variable_map(self) -> Dict[str, keras.Variable]:
    """{'model/<scope>/<name>': variable} for every variable of the model.

    Needs a built model (`build_generator` / `build_discriminator`); the
    names are the ones a TF1 checkpoint written by the original code uses.
    """
    out: Dict[str, keras.Variable] = {}
    for layer in self._flatten_layers(include_self=False, recursive=True):
      if hasattr(layer, "tf1_variables"):
        for leaf, var in layer.tf1_variables().items():
          name = f"{TF1_ROOT}/{layer.tf1_scope}/{leaf}"
          if name in out:
            raise ValueError(f"two variables map to the TF1 name {name}")
          out[name] = var
    mapped = {id(v) for v in out.values()}
    unmapped = [v.path for v in self.variables if id(v) not in mapped]
    if unmapped:
      raise ValueError(f"variables without a TF1 name: {unmapped}")
    return out

  def sn_layers(self):
    """Every spectral-normalised layer (they own the `u` vectors)."""
    return [l for l in self._flatten_layers(include_self=False, recursive=True)
            if isinstance(l, SNLayer)]

  def use_conv_policy(self, cfg) -> None:
    """Every SN convolution computes its gradients per cfg.conv_gradients (fast_conv.py)."""
    policy = ConvPolicy(cfg.conv_gradients, cfg.jit_compile)
    for layer in self.sn_layers():
      if isinstance(layer, SNConv2D):
        layer.conv_policy = policy

  def u_variables(self) -> Dict[str, keras.Variable]:
    return {f"{TF1_ROOT}/{l.tf1_scope}/u": l.u for l in self.sn_layers()}

  def attention_layers(self):
    return [l for l in self._flatten_layers(include_self=False, recursive=True)
            if isinstance(l, SelfAttention)]
