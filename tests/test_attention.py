"""The self-attention block, both variants."""

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf.layers.attention import SelfAttention


@pytest.mark.parametrize("variant", ["original", "paper"])
def test_gamma_zero_gives_identity(variant):
  x = tf.random.normal([2, 8, 8, 16], seed=1)
  layer = SelfAttention(16, "a", variant)
  np.testing.assert_array_equal(layer(x, update_u=False).numpy(), x.numpy())


@pytest.mark.parametrize("variant,size", [("original", 4), ("original", 16), ("paper", 4),
                                          ("paper", 16)])
def test_probabilities_sum_to_one_over_keys_with_expected_shape(variant, size):
  x = tf.random.normal([2, size, size, 16], seed=2)
  layer = SelfAttention(16, "a", variant)
  out, probs = layer(x, update_u=False, return_attention=True)
  n = size * size
  keys = n // 4 if variant == "original" else n
  assert probs.shape == (2, n, keys)
  assert out.shape == x.shape
  np.testing.assert_allclose(tf.reduce_sum(probs, -1).numpy(), 1.0, rtol=1e-5)
  assert np.all(probs.numpy() >= 0)


def test_original_variant_matches_numpy_reference():
  rng = np.random.RandomState(0)
  x = rng.randn(1, 4, 4, 8).astype(np.float32)
  layer = SelfAttention(8, "a", "original")
  layer(tf.constant(x), update_u=False)
  layer.gamma.assign(0.5)

  def sn(conv):
    w = conv.w.numpy().reshape(-1, conv.w.shape[-1]).astype(np.float64)
    u = conv.u.numpy().astype(np.float64)
    l2n = lambda a: a / (np.sqrt((a ** 2).sum()) + 1e-12)
    v = l2n(u @ w.T)
    u2 = l2n(v @ w)
    return w / float((v @ w @ u2.T).item())

  flat = x.reshape(16, 8).astype(np.float64)
  theta = flat @ sn(layer.query_conv)
  phi = (flat @ sn(layer.key_conv)).reshape(4, 4, 1)
  g = (flat @ sn(layer.value_conv)).reshape(4, 4, 4)
  pool = lambda t: t.reshape(2, 2, 2, 2, -1).max(axis=(1, 3)).reshape(4, -1)
  phi, g = pool(phi), pool(g)
  logits = theta @ phi.T
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  o = (p @ g) @ sn(layer.out_conv)
  ref = flat + 0.5 * o
  got = layer(tf.constant(x), update_u=False).numpy().reshape(16, 8)
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_too_few_channels_is_a_clear_error():
  with pytest.raises(ValueError, match="needs >= 8 channels"):
    SelfAttention(4, "a")
