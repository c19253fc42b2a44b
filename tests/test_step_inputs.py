"""The stateless z of the train step: finite everywhere, N(0, 1), the same under XLA."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import special, stats

from sagan_tf.train import step as step_lib


def _reference(bits: np.ndarray) -> np.ndarray:
  """float64 ndtri((k + 0.5) / 2^23), k = the top 23 bits."""
  k = bits.astype(np.uint64) >> np.uint64(32 - step_lib.Z_BITS)
  return special.ndtri((k.astype(np.float64) + 0.5) / 2.0 ** step_lib.Z_BITS)


def test_every_bit_pattern_gives_a_finite_z_within_the_documented_bound():
  # The extremes of every 23-bit k (the old 24-bit mapping sent the largest
  # k to u = 1, z = +inf), the half-way points, and 2^20 random patterns.
  edges = np.array([0, 1, 0x1FF, 0x200, 0x7FFFFFFF, 0x80000000, 0x80000200,
                    0xFFFFFDFF, 0xFFFFFE00, 0xFFFFFFFF], np.uint32)
  rand = np.random.default_rng(0).integers(0, 2 ** 32, 2 ** 20, dtype=np.uint64)
  bits = np.concatenate([edges, rand.astype(np.uint32)])
  z = step_lib.normal_from_bits(tf.constant(bits)).numpy()
  assert z.dtype == np.float32 and np.all(np.isfinite(z))
  assert np.abs(z).max() <= 5.2948
  np.testing.assert_allclose(z, _reference(bits), rtol=1e-5, atol=2e-6)
  # Symmetric: the smallest and largest k map to -z and +z exactly.
  assert z[0] == -z[edges.size - 1] and z[0] < -5.29


def test_standard_normal_is_normal_and_equal_under_xla():
  seed = tf.constant([3, 7], tf.int64)
  z = step_lib.standard_normal([4096, 64], seed).numpy()
  assert np.all(np.isfinite(z))
  assert stats.kstest(z.ravel()[:20000], "norm").pvalue > 1e-3
  assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
  compiled = tf.function(lambda s: step_lib.standard_normal([4096, 64], s), jit_compile=True)
  # ndtri to float32 rounding: a few 1e-6 relative, largest in the tails.
  np.testing.assert_allclose(compiled(seed).numpy(), z, rtol=1e-5, atol=1e-6)
