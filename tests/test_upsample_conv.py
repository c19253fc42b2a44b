"""layers/upsample_conv: nearest 2x upsampling + 3x3 SAME conv in its direct and
two sub-pixel forms, against a numpy reference, with gradients, in both precisions,
and which form the conv-gradient policy picks."""

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf import platform_info
from sagan_tf.layers import fast_conv, upsample_conv


def _numpy_upsample_conv(x, w):
  """float64 reference: np.repeat upsampling, explicit SAME correlation."""
  up = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
  b, h, wd, _ = up.shape
  p = np.pad(up, [(0, 0), (1, 1), (1, 1), (0, 0)])
  out = np.zeros((b, h, wd, w.shape[3]))
  for i in range(3):
    for j in range(3):
      out += np.einsum("bhwc,cd->bhwd", p[:, i:i + h, j:j + wd, :], w[i, j])
  return out


def _inputs(b, h, w, cin, cout, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(b, h, w, cin)), rng.normal(size=(3, 3, cin, cout))


SUBPIXEL_FORMS = upsample_conv.SUBPIXEL_FORMS


@pytest.mark.parametrize("form", sorted(SUBPIXEL_FORMS))
@pytest.mark.parametrize("shape", [(2, 4, 4, 8, 5), (1, 3, 5, 9, 4), (3, 1, 1, 8, 2)])
def test_subpixel_forms_equal_upsample_then_conv(shape, form):
  x, w = _inputs(*shape)
  got = SUBPIXEL_FORMS[form](tf.constant(x, tf.float64), tf.constant(w, tf.float64))
  np.testing.assert_allclose(got.numpy(), _numpy_upsample_conv(x, w), rtol=1e-12, atol=1e-12)


def test_subpixel_kernel_sums_the_taps_each_phase_sees():
  w = np.arange(9, dtype=np.float64).reshape(3, 3, 1, 1)       # w[i, j] = 3i + j
  k = upsample_conv.subpixel_kernel(tf.constant(w)).numpy()    # [2, 2, 1, 4]: phases (a, b)
  rows = {0: [[0], [1, 2]], 1: [[0, 1], [2]]}                 # phase -> 3x3 taps per 2x2 tap
  for a in (0, 1):
    for b in (0, 1):
      want = [[sum(w[i, j, 0, 0] for i in rows[a][t] for j in rows[b][s]) for s in (0, 1)]
              for t in (0, 1)]
      np.testing.assert_array_equal(k[:, :, 0, 2 * a + b], want)


@pytest.mark.parametrize("choice,jit", [("native", False), ("native", True),
                                        ("forward_ops", False)])
def test_every_form_has_the_same_gradients_as_tensorflows_upsample_and_conv(choice, jit):
  # native: "subpixel_phases"; native under XLA: "subpixel"; forward_ops: direct.
  size = upsample_conv.SUBPIXEL_MIN_SIZE["native"]
  x, w = _inputs(2, size, size, 8, 6, seed=1)
  dy = np.random.default_rng(2).normal(size=(2, 2 * size, 2 * size, 6))
  x, w, dy = (tf.constant(a, tf.float32) for a in (x, w, dy))

  def forward_and_grads(fn):
    with tf.GradientTape() as tape:
      tape.watch([x, w])
      y = fn(x, w)
    return [y] + tape.gradient(y, [x, w], output_gradients=dy)

  want = forward_and_grads(
      lambda a, k: tf.nn.conv2d(upsample_conv.upsample_2x(a), k, 1, "SAME"))
  policy = fast_conv.ConvPolicy(choice, jit_compile=jit)
  assert upsample_conv.form(x, w, policy) == {
      ("native", False): "subpixel_phases", ("native", True): "subpixel",
      ("forward_ops", False): "direct"}[choice, jit]
  got = forward_and_grads(lambda a, k: upsample_conv.upsample_conv3x3(a, k, policy))
  for g, v in zip(got, want):
    np.testing.assert_allclose(g.numpy(), v.numpy(), rtol=1e-5, atol=1e-4)


def test_bfloat16_subpixel_forms_are_as_close_to_float64_as_bfloat16_direct():
  x, w = _inputs(4, 8, 8, 16, 16, seed=3)
  ref = _numpy_upsample_conv(x, w)
  xb, wb = tf.constant(x, tf.bfloat16), tf.constant(w, tf.bfloat16)
  forms = dict(SUBPIXEL_FORMS, direct=lambda a, k: tf.nn.conv2d(upsample_conv.upsample_2x(a),
                                                                k, 1, "SAME"))
  err = {}
  for form, fn in forms.items():
    got = tf.cast(fn(xb, wb), tf.float64).numpy()
    err[form] = np.sqrt(np.mean((got - ref) ** 2)) / np.sqrt(np.mean(ref ** 2))
  for form in SUBPIXEL_FORMS:
    assert err[form] < 1e-2, err
    assert err[form] < 1.5 * err["direct"], err


def _conv_op_kernels(policy, size):
  @tf.function(autograph=False)
  def f(x, w):
    return upsample_conv.upsample_conv3x3(x, w, policy)
  graph = f.get_concrete_function(tf.TensorSpec([2, size, size, 8]),
                                  tf.TensorSpec([3, 3, 8, 4])).graph
  return sorted(tuple(op.inputs[1].shape.as_list()[:2]) for op in graph.get_operations()
                if op.type == "Conv2D")


SUB, PHASES, DIRECT = [(2, 2)], [(2, 2)] * 4, [(3, 3)]


def test_the_policy_picks_the_form_by_back_end_and_map_size(monkeypatch):
  xla, native = (upsample_conv.SUBPIXEL_MIN_SIZE[k] for k in ("xla", "native"))
  assert xla < native
  monkeypatch.setattr(platform_info, "onednn_enabled", lambda: False)   # an Eigen CPU
  for size in (4, xla, native):                                         # forward-op gradients
    assert _conv_op_kernels(fast_conv.ConvPolicy("auto"), size) == DIRECT
  assert _conv_op_kernels(fast_conv.ConvPolicy("native"), native) == PHASES
  assert _conv_op_kernels(fast_conv.ConvPolicy("native"), native - 1) == DIRECT
  assert _conv_op_kernels(fast_conv.ConvPolicy("auto", jit_compile=True), xla) == SUB
  assert _conv_op_kernels(fast_conv.ConvPolicy("auto", jit_compile=True), xla - 1) == DIRECT
  monkeypatch.setattr(platform_info, "onednn_enabled", lambda: True)
  assert _conv_op_kernels(fast_conv.ConvPolicy("auto"), native) == PHASES
  assert _conv_op_kernels(fast_conv.ConvPolicy("auto"), xla) == DIRECT
  monkeypatch.setattr(upsample_conv, "placement_device_type", lambda *t: "TPU")
  assert _conv_op_kernels(fast_conv.ConvPolicy("auto"), xla) == SUB


def test_other_kernels_and_dynamic_sizes_are_refused():
  with pytest.raises(ValueError, match="3x3 kernel"):
    upsample_conv.upsample_conv3x3(tf.zeros([1, 4, 4, 8]), tf.zeros([1, 1, 8, 4]))
