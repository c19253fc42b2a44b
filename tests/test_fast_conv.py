"""layers/fast_conv: the kernel policy (which gradients, decided per device at
trace time) and the forward-op gradients' equality with TensorFlow's."""

import contextlib
import dataclasses
import itertools

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf import config as config_lib
from sagan_tf import platform_info
from sagan_tf.config import Config
from sagan_tf.layers import fast_conv, upsample_conv
from sagan_tf.layers.spectral_norm import SNConv2D
from sagan_tf.models.generator import build_generator

NATIVE_GRAD_OPS = {"Conv2DBackpropInput", "Conv2DBackpropFilter"}


@pytest.mark.parametrize("device,onednn,jit", itertools.product(
    ("CPU", "GPU", "TPU"), (False, True), (False, True)))
def test_policy_for_every_device_and_cpu_back_end(device, onednn, jit):
  # Forward ops only on a CPU with Eigen kernels outside XLA (BUILD_NOTES "Speed").
  want = device == "CPU" and not onednn and not jit
  assert fast_conv.use_forward_ops("auto", device, onednn, jit) is want
  assert fast_conv.use_forward_ops("forward_ops", device, onednn, jit) is True
  assert fast_conv.use_forward_ops("native", device, onednn, jit) is False


def test_bad_choice_is_refused_and_the_config_offers_the_same_choices():
  with pytest.raises(ValueError, match="sideways"):
    fast_conv.ConvPolicy("sideways")
  with pytest.raises(ValueError, match="sideways"):
    fast_conv.use_forward_ops("sideways", "CPU", False, False)
  assert config_lib.CONV_GRADIENTS == fast_conv.CONV_GRADIENTS
  with pytest.raises(config_lib.ConfigError, match="conv_gradients"):
    dataclasses.replace(Config.preset("demo"), conv_gradients="sideways").validate()


def _grad_op_types(policy, device=None, batch=2):
  """Op types of the traced forward + backward of conv2d_same under `device`."""
  x_spec = tf.TensorSpec([batch, 8, 8, 16], tf.float32)
  w_spec = tf.TensorSpec([3, 3, 16, 8], tf.float32)

  @tf.function
  def fn(x, w):
    with tf.device(device) if device else contextlib.nullcontext():
      with tf.GradientTape() as tape:
        tape.watch([x, w])
        w2 = w * 1.0           # created under the scope, as SNConv2D's normalised kernel
        y = fast_conv.conv2d_same(x, w2, policy)
      return tape.gradient(y, [x, w])

  graph = fn.get_concrete_function(x_spec, w_spec).graph
  return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("device,want_native", [
    (None, False),                                          # this AVX2 CPU, oneDNN off
    ("/job:localhost/replica:0/task:0/device:CPU:1", False),
    ("/device:GPU:0", True),
    ("/job:worker/replica:0/task:0/device:TPU:0", True),
])
def test_auto_decides_by_the_device_the_conv_is_placed_on(device, want_native, monkeypatch):
  monkeypatch.setattr(platform_info, "onednn_enabled", lambda: False)  # as on the CI CPU
  ops = _grad_op_types(fast_conv.ConvPolicy("auto"), device)
  assert bool(NATIVE_GRAD_OPS & ops) is want_native
  assert NATIVE_GRAD_OPS <= ops if want_native else not NATIVE_GRAD_OPS & ops


def test_auto_keeps_native_gradients_on_onednn_cpus_and_under_xla(monkeypatch):
  assert NATIVE_GRAD_OPS <= _grad_op_types(fast_conv.ConvPolicy("auto", jit_compile=True))
  monkeypatch.setattr(platform_info, "onednn_enabled", lambda: True)
  assert NATIVE_GRAD_OPS <= _grad_op_types(fast_conv.ConvPolicy("auto"))


@pytest.mark.parametrize("device", [None, "/device:GPU:0"])
@pytest.mark.parametrize("onednn", [False, True])
def test_forcing_overrides_the_device_and_back_end(device, onednn, monkeypatch):
  monkeypatch.setattr(platform_info, "onednn_enabled", lambda: onednn)
  assert not NATIVE_GRAD_OPS & _grad_op_types(fast_conv.ConvPolicy("forward_ops"), device)
  assert NATIVE_GRAD_OPS <= _grad_op_types(fast_conv.ConvPolicy("native"), device)


def test_placement_device_type_reads_tensors_then_strategy_then_default():
  eager = tf.constant(1.0)
  assert fast_conv.placement_device_type(eager) == "CPU"

  @tf.function
  def fn():
    with tf.device("/device:GPU:0"):
      on_gpu = tf.constant(1.0)
    unplaced = tf.constant(2.0)
    kinds.append((fast_conv.placement_device_type(unplaced, on_gpu),
                  fast_conv.placement_device_type(unplaced)))
    return unplaced

  kinds = []
  fn.get_concrete_function()
  assert kinds == [("GPU", "CPU")]


def test_a_tpu_strategy_replica_context_means_tpu(monkeypatch):
  # No TPU here: an uninitialised TPUStrategy object stands for the current strategy
  # (tensors inside a TPU replicate context carry no device).
  fake = object.__new__(tf.distribute.TPUStrategy)
  monkeypatch.setattr(tf.distribute, "has_strategy", lambda: True)
  monkeypatch.setattr(tf.distribute, "get_strategy", lambda: fake)

  @tf.function
  def fn():
    kinds.append(fast_conv.placement_device_type(tf.constant(1.0)))
    return tf.constant(0)

  kinds = []
  fn.get_concrete_function()
  assert kinds == ["TPU"]
  assert not fast_conv.use_forward_ops("auto", kinds[0], False, False)


def test_mirrored_replicas_on_eigen_cpus_use_forward_ops(two_cpu_strategy, monkeypatch):
  monkeypatch.setattr(platform_info, "onednn_enabled", lambda: False)
  x = tf.random.stateless_normal([2, 8, 8, 16], seed=[1, 2])
  w = tf.random.stateless_normal([3, 3, 16, 8], seed=[3, 4])

  def replica_fn(x, w):
    with tf.GradientTape() as tape:
      tape.watch(w)
      w2 = w * 1.0
      y = fast_conv.conv2d_same(x, w2)
    return tape.gradient(y, w)

  @tf.function
  def step(x, w):
    return two_cpu_strategy.run(replica_fn, args=(x, w))

  ops = {op.type for op in step.get_concrete_function(x, w).graph.get_operations()}
  assert "Conv2D" in ops and not NATIVE_GRAD_OPS & ops


@pytest.mark.parametrize("choice", ["forward_ops", "native"])
def test_models_pass_the_configured_choice_to_every_sn_conv(choice):
  cfg = dataclasses.replace(
      Config.preset("demo"), image_size=32, num_classes=3, z_dim=8, gf_dim=4,
      g_attention_res=(16,), conv_gradients=choice)
  g = build_generator(cfg)
  convs = [l for l in g.sn_layers() if isinstance(l, SNConv2D)]
  assert convs and {l.conv_policy for l in convs} == {fast_conv.ConvPolicy(choice, False)}

  @tf.function
  def grads(z, y):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(g(z, y, training=True, update_u=False))
    return tape.gradient(loss, g.trainable_variables)

  graph = grads.get_concrete_function(tf.TensorSpec([2, 8]), tf.TensorSpec([2], tf.int32)).graph
  n_native = sum(op.type == "Conv2DBackpropFilter" for op in graph.get_operations())
  # native: TF's filter gradient for every conv; forward ops: only for the convs
  # on fewer than MIN_INPUT_CHANNELS inputs (here 4-channel ones, e.g. g_snconv_last).
  small = [l for l in convs if l.w.shape[2] < fast_conv.MIN_INPUT_CHANNELS]
  assert 0 < len(small) < len(convs)
  # native: the up blocks' snconv1 on inputs from SUBPIXEL_MIN_SIZE["native"] up
  # (here g_block3's, 16x16) take the sub-pixel phases form: four 2x2 convs.
  phases = sum(r >= upsample_conv.SUBPIXEL_MIN_SIZE["native"] for r in (4, 8, 16))
  assert phases == 1
  assert n_native == (len(convs) + 3 * phases if choice == "native" else len(small))


@pytest.mark.parametrize("choice", ["forward_ops", "native", "auto"])
@pytest.mark.parametrize("shape", [(2, 4, 4, 16, 8, 3), (2, 20, 20, 8, 4, 3), (2, 6, 6, 8, 8, 1)])
def test_fast_conv_gradients_equal_tensorflows(shape, choice):
  b, h, w, cin, cout, k = shape
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(size=(b, h, w, cin)), tf.float32)
  kernel = tf.constant(rng.normal(size=(k, k, cin, cout)), tf.float32)
  dy = tf.constant(rng.normal(size=(b, h, w, cout)), tf.float32)

  def forward_and_grads(conv):
    with tf.GradientTape() as tape:
      tape.watch([x, kernel])
      y = conv(x, kernel)
    return [y] + tape.gradient(y, [x, kernel], output_gradients=dy)

  want = forward_and_grads(lambda a, b_: tf.nn.conv2d(a, b_, 1, "SAME"))
  got = forward_and_grads(lambda a, b_: fast_conv.conv2d_same(a, b_,
                                                              fast_conv.ConvPolicy(choice)))
  for a, b_ in zip(want, got):
    np.testing.assert_allclose(b_.numpy(), a.numpy(), rtol=1e-5, atol=1e-4)
