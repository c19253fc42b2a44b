"""Spectral normalisation with the original's semantics (ops.spectral_normed_weight)."""

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf.layers.spectral_norm import (SNConv2D, SNDense, SNEmbedding, l2_normalize,
                                           power_iteration, spectral_normalize)


def _np_power_iteration(w_mat, u):
  def l2n(x):
    return x / (np.sqrt(np.sum(x ** 2)) + 1e-12)
  v = l2n(u @ w_mat.T)
  u2 = l2n(v @ w_mat)
  return float((v @ w_mat @ u2.T).item()), u2


def test_power_iteration_matches_numpy_reference():
  rng = np.random.RandomState(0)
  w = rng.randn(12, 5).astype(np.float64)
  u = rng.randn(1, 5)
  sigma, u_new = power_iteration(tf.constant(w), tf.constant(u))
  ref_sigma, ref_u = _np_power_iteration(w, u)
  np.testing.assert_allclose(sigma.numpy(), ref_sigma, rtol=1e-12)
  np.testing.assert_allclose(u_new.numpy(), ref_u, rtol=1e-12)


def test_sigma_matches_largest_singular_value_after_many_iterations():
  rng = np.random.RandomState(1)
  w = rng.randn(3, 3, 4, 6).astype(np.float32)
  layer = SNConv2D(6, 3, "t/conv")
  layer.build((None, 8, 8, 4))
  layer.w.assign(w)
  x = tf.zeros([1, 8, 8, 4])
  for _ in range(200):
    layer(x, update_u=True)
  top = np.linalg.svd(w.reshape(-1, 6), compute_uv=False)[0]
  np.testing.assert_allclose(layer.sigma().numpy(), top, rtol=1e-4)
  w_bar, _, _ = spectral_normalize(layer.w, layer.u)
  np.testing.assert_allclose(np.linalg.svd(w_bar.numpy().reshape(-1, 6), compute_uv=False)[0],
                             1.0, rtol=1e-4)


def test_gradient_through_sigma_matches_finite_differences():
  """No stop-gradient: d(sum(W_bar * C))/dW includes the paths through v, u' and sigma."""
  rng = np.random.RandomState(2)
  w = tf.Variable(rng.randn(6, 4))
  u = tf.constant(rng.randn(1, 4))
  c = tf.constant(rng.randn(6, 4))

  def f(wv):
    w_bar, _, _ = spectral_normalize(wv, u)
    return tf.reduce_sum(w_bar * c)

  with tf.GradientTape() as tape:
    y = f(w)
  grad = tape.gradient(y, w).numpy()
  num = np.zeros_like(grad)
  eps = 1e-6
  for idx in np.ndindex(*grad.shape):
    d = np.zeros(grad.shape)
    d[idx] = eps
    num[idx] = (f(tf.constant(w.numpy() + d)) - f(tf.constant(w.numpy() - d))).numpy() / (2 * eps)
  np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)
  # A stop-gradient variant (sigma treated as a constant) gives a different gradient.
  with tf.GradientTape() as tape:
    w_bar, sigma, _ = spectral_normalize(w, u)
    y2 = tf.reduce_sum(w / tf.stop_gradient(sigma) * c)
  assert np.abs(tape.gradient(y2, w).numpy() - grad).max() > 1e-3


def _autograd_spectral_normalize(w, u):
  """The power iteration in plain ops, differentiated by autograd (the reference)."""
  w_mat = tf.reshape(w, [-1, w.shape[-1]])
  l2n = lambda x: x / (tf.sqrt(tf.reduce_sum(x * x)) + 1e-12)  # noqa: E731
  v = l2n(tf.matmul(u, w_mat, transpose_b=True))
  u_new = l2n(tf.matmul(v, w_mat))
  sigma = tf.reduce_sum(tf.matmul(v, w_mat) * u_new)
  return tf.reshape(w_mat / sigma, tf.shape(w)), sigma, u_new


@pytest.mark.parametrize("uses", [("w_bar",), ("sigma",), ("u_new",), ("w_bar", "sigma", "u_new")])
def test_folded_backward_equals_autograd_of_the_power_iteration(uses):
  """The hand-written gradient, for any mix of used outputs, equals autograd's (float64)."""
  rng = np.random.RandomState(3)
  w = tf.Variable(rng.randn(3, 3, 4, 6))
  u = tf.constant(rng.randn(1, 6))
  weights = {"w_bar": tf.constant(rng.randn(3, 3, 4, 6)), "sigma": tf.constant(2.5, tf.float64),
             "u_new": tf.constant(rng.randn(1, 6))}
  grads = []
  for fn in (spectral_normalize, _autograd_spectral_normalize):
    with tf.GradientTape() as tape:
      out = dict(zip(("w_bar", "sigma", "u_new"), fn(w, u)))
      y = tf.add_n([tf.reduce_sum(out[k] * weights[k]) for k in uses])
    grads.append(tape.gradient(y, w).numpy())
  np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10, atol=1e-13)
  assert np.abs(grads[1]).max() > 1e-3


def test_folded_backward_under_xla_matches_eager_and_gives_u_no_gradient():
  rng = np.random.RandomState(4)
  w = tf.constant(rng.randn(5, 7).astype(np.float32))
  u = tf.constant(rng.randn(1, 7).astype(np.float32))
  c = tf.constant(rng.randn(5, 7).astype(np.float32))

  def grads(wv, uv):
    with tf.GradientTape() as tape:
      tape.watch([wv, uv])
      w_bar, _, _ = spectral_normalize(wv, uv)
      y = tf.reduce_sum(w_bar * c)
    return tape.gradient(y, [wv, uv])

  eager_w, eager_u = grads(w, u)
  xla_w, _ = tf.function(grads, jit_compile=True)(w, u)
  assert eager_u is None  # u is only assigned, never trained
  np.testing.assert_allclose(xla_w.numpy(), eager_w.numpy(), rtol=1e-5, atol=1e-6)


def test_update_u_false_leaves_u_untouched_and_true_assigns_u_prime():
  layer = SNDense(5, "t/dense")
  x = tf.ones([2, 3])
  layer.build((None, 3))
  u0 = layer.u.numpy().copy()
  y_no = layer(x, update_u=False)
  np.testing.assert_array_equal(layer.u.numpy(), u0)
  y_yes = layer(x, update_u=True)
  _, u_expected = _np_power_iteration(layer.matrix.numpy().astype(np.float64),
                                      u0.astype(np.float64))
  np.testing.assert_allclose(layer.u.numpy(), u_expected, rtol=1e-5)
  # Both calls used one iteration from the same u: identical outputs.
  np.testing.assert_array_equal(y_no.numpy(), y_yes.numpy())


def test_embedding_is_normalised_on_its_transpose():
  emb = SNEmbedding(7, 4, "t/emb")
  emb.build((None,))
  assert tuple(emb.u.shape) == (1, 7)
  m = emb.embedding_map.numpy()
  out = emb(tf.constant([0, 3, 6]), update_u=False).numpy()
  sigma, _ = _np_power_iteration(m.T.astype(np.float64), emb.u.numpy().astype(np.float64))
  np.testing.assert_allclose(out, m[[0, 3, 6]] / sigma, rtol=1e-5)


def test_u_initial_values_are_truncated_normal_with_stddev_one():
  layer = SNDense(4096, "t/wide")
  layer.build((None, 2))
  u = layer.u.numpy()
  assert np.abs(u).max() <= 2.0 + 1e-6
  assert 0.8 < u.std() < 0.95  # std of N(0,1) truncated at 2 sigma: 0.88


def test_l2_normalize_matches_the_original_formula():
  x = tf.constant([[3.0, 4.0]])
  np.testing.assert_allclose(l2_normalize(x).numpy(), [[0.6, 0.8]], rtol=1e-7)
  np.testing.assert_array_equal(l2_normalize(tf.zeros([1, 3])).numpy(), np.zeros([1, 3]))
