"""Stride-1 SAME convolution whose gradients run as forward convolutions / matmuls.

Same function, same derivatives as `tf.nn.conv2d(x, w, 1, "SAME")`; only the
kernels that compute the backward pass differ (BUILD_NOTES.md, "Speed"). On the CPU,
TensorFlow's `Conv2DBackpropInput` / `Conv2DBackpropFilter` reach a fraction
of the forward convolution's rate, worst at the small-spatial, wide layers of
this model (4x4 and 8x8 maps with 1024 channels: 5-10x slower than the
forward pass). The same sums written as forward ops:

* input gradient: dx = conv(dy, w flipped in H and W, in/out swapped), SAME
  (odd k); for k = 1 a matmul dy @ w^T.
* filter gradient: dw[i, j, ci, co] = sum_{b,h,w} xpad[b, h+i, w+j, ci] dy[b, h, w, co]:
  - k = 1, or maps of at most `IM2COL_MAX_POSITIONS` positions: one matmul of
    the k*k-shifted copies of x (im2col) with dy;
  - larger maps: a VALID forward convolution of xpad transposed to
    [Cin, H+2p, W+2p, B] with dy transposed to [H, W, B, Cout] (batch as the
    contraction axis).

Results equal TensorFlow's to float rounding (the summation order differs).
Even kernel sizes keep TensorFlow's own gradient.

Whether these gradients are used is decided here, once per traced conv, by
`use_forward_ops` (the kernel policy): only where they were measured to win,
a CPU running TensorFlow's Eigen kernels (oneDNN off) outside XLA. oneDNN
CPUs, GPUs (cuDNN) and TPUs (XLA) keep the native gradients (BUILD_NOTES.md,
"Speed": 1.18x float32 / 8.4x bfloat16 on an AVX2 CPU, 1.2-1.3x slower and
twice the memory on an AMX CPU). `--conv_gradients=forward_ops|native`
forces either (A/B runs).
"""

from __future__ import annotations

import dataclasses

from absl import logging
import tensorflow as tf

from sagan_tf import platform_info
from sagan_tf.config import CONV_GRADIENTS  # cfg.conv_gradients: "auto" = the policy below

# Inputs with fewer channels keep TensorFlow's gradient: for the RGB input
# layer the transposed formulation is slower (BUILD_NOTES.md, "Speed").
MIN_INPUT_CHANNELS = 8
# Above this many positions (H*W) im2col's patch matrix costs more memory
# traffic than the transposed forward convolution (measured; BUILD_NOTES.md, "Speed").
IM2COL_MAX_POSITIONS = 16 * 16


def _input_gradient(dy: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
  k, _, cin, cout = w.shape
  if k == 1:
    b, h, wd = tf.shape(dy)[0], dy.shape[1], dy.shape[2]
    dx = tf.matmul(tf.reshape(dy, [-1, cout]), tf.reshape(w, [cin, cout]), transpose_b=True)
    return tf.reshape(dx, [b, h, wd, cin])
  w_t = tf.transpose(tf.reverse(w, axis=[0, 1]), [0, 1, 3, 2])  # [k, k, cout, cin]
  return tf.nn.conv2d(dy, w_t, strides=1, padding="SAME")


def _filter_gradient(x: tf.Tensor, dy: tf.Tensor, k: int) -> tf.Tensor:
  cin, cout = x.shape[-1], dy.shape[-1]
  h, wd = x.shape[1], x.shape[2]
  if k == 1 or h * wd <= IM2COL_MAX_POSITIONS:
    if k == 1:
      cols = tf.reshape(x, [-1, cin])
    else:
      # [B, H, W, k*k*Cin], tap-major then Cin: the layout of w reshaped to
      # [k*k*Cin, Cout]. One op writes the patch matrix, zero-padded (SAME):
      # no padded copy of x, no k*k shifted slices beside their concatenation
      # (which held ~2x the matrix at once; BUILD_NOTES.md, Speed).
      patches = tf.image.extract_patches(x, sizes=[1, k, k, 1], strides=[1, 1, 1, 1],
                                         rates=[1, 1, 1, 1], padding="SAME")
      cols = tf.reshape(patches, [-1, k * k * cin])
    dw = tf.matmul(cols, tf.reshape(dy, [-1, cout]), transpose_a=True)
    return tf.reshape(dw, [k, k, cin, cout])
  p = k // 2
  xp = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
  dw = tf.nn.conv2d(tf.transpose(xp, [3, 1, 2, 0]),      # [Cin, H+2p, W+2p, B]
                    tf.transpose(dy, [1, 2, 0, 3]),      # [H, W, B, Cout]
                    strides=1, padding="VALID")          # [Cin, k, k, Cout]
  return tf.transpose(dw, [1, 2, 0, 3])


@tf.custom_gradient
def _conv2d_same_fast(x, w):
  y = tf.nn.conv2d(x, w, strides=1, padding="SAME")

  def grad(dy):
    return _input_gradient(dy, w), _filter_gradient(x, dy, w.shape[0])

  return y, grad


# ------------------------------------------------------------------ policy
def _check_choice(choice: str) -> None:
  if choice not in CONV_GRADIENTS:
    raise ValueError(f"conv gradients {choice!r} is not one of {', '.join(CONV_GRADIENTS)}")


def use_forward_ops(choice: str, device_type: str, onednn: bool, jit_compile: bool) -> bool:
  """The kernel policy: True = the forward-op gradients above, False = TensorFlow's.

  choice: "forward_ops" / "native" force it; "auto" gives forward ops only on
  a "CPU" device_type with oneDNN off and jit_compile False. Measured
  (BUILD_NOTES.md, "Speed"): a win on Eigen CPU kernels (float32 1.18x,
  bfloat16 8.4x), a loss with oneDNN (1.2-1.3x slower, twice the memory), no
  gain under XLA on the CPU (which already lowers conv gradients to forward
  convs: 9.98 vs 9.67 CPU-s/iteration); GPU and TPU keep cuDNN's / XLA's own.
  """
  _check_choice(choice)
  if choice != "auto":
    return choice == "forward_ops"
  return device_type == "CPU" and not onednn and not jit_compile


def placement_device_type(*tensors: tf.Tensor) -> str:
  """'CPU', 'GPU' or 'TPU': where ops created now (with these inputs) run.

  The first device set on a tensor (graph tensors carry the device scope they
  were created under, e.g. MirroredStrategy's per-replica scope; eager ones
  their placement); else a TPUStrategy's replica context means TPU; else
  TensorFlow's default placement (a visible GPU takes the convolutions).
  """
  for t in tensors:
    device = getattr(t, "device", "") or ""
    if device:
      kind = tf.DeviceSpec.from_string(device).device_type or ""
      if kind.startswith("TPU"):
        return "TPU"
      if kind in ("CPU", "GPU"):
        return kind
  if tf.distribute.has_strategy() and isinstance(
      tf.distribute.get_strategy(),
      (tf.distribute.TPUStrategy, tf.distribute.experimental.TPUStrategy)):
    return "TPU"
  return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"


@dataclasses.dataclass(frozen=True)
class ConvPolicy:
  """What a model was built with: cfg.conv_gradients and cfg.jit_compile.

  `forward_ops(x, w)` applies `use_forward_ops` at trace time, for the device
  the convolution is placed on and this process's CPU back end.
  """
  choice: str = "auto"
  jit_compile: bool = False

  def __post_init__(self):
    _check_choice(self.choice)

  def forward_ops(self, x: tf.Tensor, w: tf.Tensor) -> bool:
    device_type = placement_device_type(w, x)
    onednn = platform_info.onednn_enabled() if device_type == "CPU" else False
    decision = use_forward_ops(self.choice, device_type, onednn, self.jit_compile)
    _log_once(self, device_type, onednn, decision)
    return decision


_LOGGED = set()


def _log_once(policy: ConvPolicy, device_type: str, onednn: bool, decision: bool) -> None:
  key = (policy, device_type, onednn, decision)
  if key not in _LOGGED:
    _LOGGED.add(key)
    logging.info("conv gradients %s on %s (oneDNN %s, XLA %s): %s.", policy.choice,
                 device_type, "on" if onednn else "off", "on" if policy.jit_compile else "off",
                 "forward ops (fast_conv)" if decision else "TensorFlow's native kernels")


def conv2d_same(x: tf.Tensor, w: tf.Tensor, policy: ConvPolicy = ConvPolicy()) -> tf.Tensor:
  """tf.nn.conv2d(x [B,H,W,Cin], w [k,k,Cin,Cout], stride 1, SAME) -> [B,H,W,Cout].

  Odd square kernels with static H, W, channels (at least MIN_INPUT_CHANNELS
  inputs) use the forward-op gradients above where `policy` says so; anything
  else is plain tf.nn.conv2d. The forward values are the same either way.
  """
  k1, k2 = w.shape[0], w.shape[1]
  if (k1 is None or k1 != k2 or k1 % 2 == 0 or None in x.shape[1:] or
      x.shape[-1] < MIN_INPUT_CHANNELS or not policy.forward_ops(x, w)):
    return tf.nn.conv2d(x, w, strides=1, padding="SAME")
  return _conv2d_same_fast(x, w)
