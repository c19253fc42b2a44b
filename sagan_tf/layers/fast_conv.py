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
"""

from __future__ import annotations

import tensorflow as tf

# Read when a function is traced: False gives plain tf.nn.conv2d everywhere (for
# A/B measurements, BUILD_NOTES.md "Speed"; not a user setting).
ENABLED = True
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
      p = k // 2
      xp = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
      # [B, H, W, k*k*Cin], tap-major then Cin: the layout of w reshaped to [k*k*Cin, Cout].
      shifted = [xp[:, i:i + h, j:j + wd, :] for i in range(k) for j in range(k)]
      cols = tf.reshape(tf.concat(shifted, axis=-1), [-1, k * k * cin])
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


def conv2d_same(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
  """tf.nn.conv2d(x [B,H,W,Cin], w [k,k,Cin,Cout], stride 1, SAME) -> [B,H,W,Cout].

  Odd square kernels with static H, W, channels (at least MIN_INPUT_CHANNELS
  inputs) use the forward-op gradients above; anything else is plain
  tf.nn.conv2d.
  """
  k1, k2 = w.shape[0], w.shape[1]
  if (not ENABLED or k1 is None or k1 != k2 or k1 % 2 == 0 or None in x.shape[1:] or
      x.shape[-1] < MIN_INPUT_CHANNELS):
    return tf.nn.conv2d(x, w, strides=1, padding="SAME")
  return _conv2d_same_fast(x, w)
