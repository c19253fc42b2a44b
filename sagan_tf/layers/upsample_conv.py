"""Nearest-neighbour 2x upsampling, and upsampling followed by a 3x3 conv.

`upsample_conv3x3(x, w)` is conv3x3_SAME(upsample_2x(x), w), the first conv of
the generator's up blocks (the original's `snconv1(upsample(x))`), computed
in one of three forms with the same values (up to float rounding):

* direct: upsample, then the 3x3 conv at the high resolution (9 taps per
  output pixel);
* sub-pixel: each output pixel (2i+a, 2j+b) sees only two distinct input
  rows and two distinct columns of the upsampled map, so it is a 2x2 conv of
  x itself with the 3x3 taps summed per input pixel. Along one axis, phase
  a = 0 reads rows (i-1, i) with taps (w0, w1+w2), phase a = 1 reads rows
  (i, i+1) with taps (w0+w1, w2). 16 taps per low-resolution pixel instead
  of 36: 2.25x fewer FLOPs, and the same for both gradients. Two ways to
  lay the four phases out:
  - "subpixel": one 2x2 VALID conv of x padded by one pixel on every side
    computes all four phases as 4*Cout channels at (H+1)x(W+1) positions;
    phase (a, b) of output pixel (i, j) is sliced from position (i+a, j+b)
    ((1 + 1/H)^2 more FLOPs than the four phases need: 1.27x at 8x8). XLA
    fuses the slices, and one wide conv suits matrix units;
  - "subpixel_phases": one 2x2 VALID conv per phase, of x padded by one
    pixel on the sides that phase reads beyond (top if a = 0, bottom if
    a = 1; left / right by b), each exactly HxW, interleaved by
    depth_to_space. No slices: TensorFlow's own strided-slice gradient
    writes a whole (H+1)x(W+1)x4*Cout map of zeros per phase, which cost
    more than the conv saves.

Which form runs is decided per layer when the step is traced (`form`), from
measurements (BUILD_NOTES.md, "Speed", "Sub-pixel upsample + conv"): the
direct form where the conv-gradient policy picks the forward-op gradients
(`fast_conv.py`: Eigen CPUs outside XLA; only odd SAME kernels have them)
and on small maps, where the padded positions and TensorFlow's small-map
2x2 kernels make the sub-pixel forms slower; from `SUBPIXEL_MIN_SIZE` up,
"subpixel" under XLA (--jit_compile, TPU) and "subpixel_phases" with
TensorFlow's own kernels.
"""

from __future__ import annotations

import tensorflow as tf

from sagan_tf.layers.fast_conv import ConvPolicy, conv2d_same, placement_device_type

# PHASE_TAPS[a, t, k]: the weight of 3x3 tap k in tap t of phase a's 2x2
# kernel, along one axis (see the module docstring).
PHASE_TAPS = ((( 1.0, 0.0, 0.0), (0.0, 1.0, 1.0)),
              (( 1.0, 1.0, 0.0), (0.0, 0.0, 1.0)))


# The smallest input map (H = W) that takes a sub-pixel form: compiled by
# XLA (--jit_compile, TPU) or not. Measured forward + both gradients against
# the direct form (BUILD_NOTES.md): AMD EPYC Zen 4 (oneDNN on), "subpixel"
# under XLA 0.57-0.95x at 4x4, 1.24-1.31x at 8x8, 1.45-1.87x at 16x16;
# AMD EPYC Zen 5 (oneDNN on), without XLA, "subpixel_phases" 0.5-0.6x at
# 4x4, 0.4-1.65x at 8x8, 1.0-2.0x from 16x16.
SUBPIXEL_MIN_SIZE = {"xla": 8, "native": 16}


def upsample_2x(x: tf.Tensor) -> tf.Tensor:
  """Nearest-neighbour 2x upsampling, [B,H,W,C] -> [B,2H,2W,C].

  Equals the original's `tf.image.resize_nearest_neighbor` to the bit (it
  only copies values); a broadcast + reshape is cheaper and XLA-friendly.
  """
  b, h, w, c = x.shape
  b = tf.shape(x)[0] if b is None else b
  x = tf.reshape(x, [b, h, 1, w, 1, c])
  x = tf.broadcast_to(x, [b, h, 2, w, 2, c])
  return tf.reshape(x, [b, 2 * h, 2 * w, c])


def subpixel_kernel(w: tf.Tensor) -> tf.Tensor:
  """w [3,3,Cin,Cout] -> [2,2,Cin,4*Cout], output channels ordered (a, b, Cout).

  Summed in float32 or float64 (then cast back to w's dtype): a bfloat16
  kernel's sums are rounded once.
  """
  dtype = tf.float64 if w.dtype == tf.float64 else tf.float32
  taps = tf.constant(PHASE_TAPS, dtype)
  k = tf.einsum("atk,bsl,klcd->tscabd", taps, taps, tf.cast(w, dtype))
  cin, cout = w.shape[2], w.shape[3]
  return tf.cast(tf.reshape(k, [2, 2, cin, 4 * cout]), w.dtype)


def _subpixel(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
  """The "subpixel" form (module docstring): one conv, phases sliced out."""
  h, wd, cout = x.shape[1], x.shape[2], w.shape[3]
  xp = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
  y = tf.nn.conv2d(xp, subpixel_kernel(w), strides=1, padding="VALID")  # [B,H+1,W+1,4*Cout]
  b = tf.shape(y)[0]
  y = tf.reshape(y, [b, h + 1, wd + 1, 2, 2, cout])
  rows = []
  for a in (0, 1):
    cols = [y[:, a:a + h, c:c + wd, a, c, :] for c in (0, 1)]
    rows.append(tf.stack(cols, axis=3))                   # [B,H,W,2(b),Cout]
  out = tf.stack(rows, axis=2)                            # [B,H,2(a),W,2(b),Cout]
  return tf.reshape(out, [b, 2 * h, 2 * wd, cout])


def _subpixel_phases(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
  """The "subpixel_phases" form (module docstring): one conv per phase."""
  cin, cout = w.shape[2], w.shape[3]
  k = tf.reshape(subpixel_kernel(w), [2, 2, cin, 2, 2, cout])
  phases = [tf.nn.conv2d(tf.pad(x, [[0, 0], [1 - a, a], [1 - b, b], [0, 0]]),
                         k[:, :, :, a, b, :], strides=1, padding="VALID")   # [B,H,W,Cout]
            for a in (0, 1) for b in (0, 1)]
  # Channels (a, b, Cout) at (i, j) -> pixel (2i+a, 2j+b): depth_to_space's order.
  return tf.nn.depth_to_space(tf.concat(phases, axis=-1), 2)


# The sub-pixel forms by name (module docstring); "direct" is the third.
SUBPIXEL_FORMS = {"subpixel": _subpixel, "subpixel_phases": _subpixel_phases}


def upsample_conv3x3(x: tf.Tensor, w: tf.Tensor, policy: ConvPolicy = ConvPolicy()) -> tf.Tensor:
  """conv2d(upsample_2x(x [B,H,W,Cin]), w [3,3,Cin,Cout], SAME) -> [B,2H,2W,Cout].

  The form per `form` (module docstring); static H, W and channels.
  """
  if tuple(w.shape[:2]) != (3, 3) or None in x.shape[1:]:
    raise ValueError(f"upsample_conv3x3 needs a 3x3 kernel and static input sizes, got "
                     f"kernel {w.shape}, input {x.shape}")
  chosen = form(x, w, policy)
  if chosen in SUBPIXEL_FORMS:
    return SUBPIXEL_FORMS[chosen](x, w)
  return conv2d_same(upsample_2x(x), w, policy)


def form(x: tf.Tensor, w: tf.Tensor, policy: ConvPolicy) -> str:
  """Which form computes this layer: "direct" or a key of SUBPIXEL_FORMS.

  "direct" where `policy` gives the forward-op gradients, or where the
  smaller side of x is below SUBPIXEL_MIN_SIZE["xla"] if XLA compiles the conv
  (policy.jit_compile, or a TPU), SUBPIXEL_MIN_SIZE["native"] if not; else
  "subpixel" under XLA and "subpixel_phases" with TensorFlow's own kernels.
  """
  if policy.forward_ops(x, w):
    return "direct"
  compiled = policy.jit_compile or placement_device_type(x, w) == "TPU"
  if min(x.shape[1], x.shape[2]) < SUBPIXEL_MIN_SIZE["xla" if compiled else "native"]:
    return "direct"
  return "subpixel" if compiled else "subpixel_phases"
