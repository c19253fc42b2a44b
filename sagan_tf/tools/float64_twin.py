"""The port's own graph computed in float64: the exact-math twin of a float32 run.

The parity verdict (parity_check.py) needs, for every quantity, how far
float32 rounding alone moves it on this machine. It gets that by running the
SAME code (the port's layers, models, losses, step and Keras Adam) a second
time with every float32 in it turned into float64, and comparing the two.

No model code knows about this: inside `float64_math()`

* the module-level `tf` and `keras` of every `sagan_tf.layers.*`,
  `sagan_tf.models.*` and `sagan_tf.losses` module are replaced by proxies
  whose `float32` is float64 (`tf.cast(x, tf.float32)`, `dtype="float32"`
  variables, Keras dtype policies "float32" / "mixed_bfloat16"), and
* `tf.compat.v1.nn.fused_batch_norm`, which has no float64 kernel, is the
  same math written out (batch moments; Bessel-corrected variance returned).

Models built and run inside the context compute in float64 end to end. A
monkeypatched function (the mutation tests) is seen by both runs alike.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Dict

import keras
import tensorflow as tf

_MODULE_PREFIXES = ("sagan_tf.layers.", "sagan_tf.models.", "sagan_tf.losses")
_DTYPE_MAP = {"float32": "float64", "mixed_bfloat16": "float64", "bfloat16": "float64"}


def _fused_batch_norm_f64(x, scale, offset, mean=None, variance=None, epsilon=1e-3,
                          data_format="NHWC", is_training=True, name=None,
                          exponential_avg_factor=1.0):
  """tf.compat.v1.nn.fused_batch_norm (NHWC) for any float dtype."""
  del name, exponential_avg_factor
  if data_format != "NHWC":
    raise ValueError(f"float64 twin: data_format {data_format!r} is not supported")
  if is_training:
    batch_mean, batch_var = tf.nn.moments(x, [0, 1, 2])
    n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), x.dtype)
    y = tf.nn.batch_normalization(x, batch_mean, batch_var, offset, scale, epsilon)
    return y, batch_mean, batch_var * n / (n - 1)
  y = tf.nn.batch_normalization(x, mean, variance, offset, scale, epsilon)
  return y, mean, variance


class _Proxy:
  """Attribute access to `target`, with some dotted names overridden."""

  def __init__(self, target, overrides: Dict[str, object], prefix: str = ""):
    self._target, self._overrides, self._prefix = target, overrides, prefix

  def __getattr__(self, name):
    full = self._prefix + name
    if full in self._overrides:
      return self._overrides[full]
    value = getattr(self._target, name)
    if any(k.startswith(full + ".") for k in self._overrides):
      return _Proxy(value, self._overrides, full + ".")
    return value


def _keras_variable_f64(*args, dtype=None, **kwargs):
  return keras.Variable(*args, dtype=_DTYPE_MAP.get(dtype, dtype) or "float64", **kwargs)


@contextlib.contextmanager
def float64_math():
  """Within: the port's layers/models/losses compute and store in float64."""
  tf_proxy = _Proxy(tf, {"float32": tf.float64, "bfloat16": tf.float64,
                         "compat.v1.nn.fused_batch_norm": _fused_batch_norm_f64})
  keras_proxy = _Proxy(keras, {"Variable": _keras_variable_f64})
  saved = []
  for name, module in list(sys.modules.items()):
    if module is None or not name.startswith(_MODULE_PREFIXES):
      continue
    for attr, proxy in (("tf", tf_proxy), ("keras", keras_proxy)):
      if getattr(module, attr, None) in (tf, keras):
        saved.append((module, attr, getattr(module, attr)))
        setattr(module, attr, proxy)
  layer_init, add_weight = keras.layers.Layer.__init__, keras.layers.Layer.add_weight

  def init(self, *args, dtype=None, **kwargs):
    if isinstance(dtype, str) or dtype is None:
      dtype = _DTYPE_MAP.get(dtype, dtype) or "float64"
    layer_init(self, *args, dtype=dtype, **kwargs)

  def weight(self, *args, dtype=None, **kwargs):
    return add_weight(self, *args, dtype=_DTYPE_MAP.get(dtype, dtype) or "float64", **kwargs)

  floatx = keras.config.floatx()
  keras.layers.Layer.__init__, keras.layers.Layer.add_weight = init, weight
  keras.config.set_floatx("float64")
  try:
    yield
  finally:
    keras.config.set_floatx(floatx)
    keras.layers.Layer.__init__, keras.layers.Layer.add_weight = layer_init, add_weight
    for module, attr, value in saved:
      setattr(module, attr, value)
