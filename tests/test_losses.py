"""GAN losses against numpy."""

import numpy as np
import pytest

from sagan_tf import losses


def test_hinge_losses_match_numpy():
  real = np.array([2.0, 0.5, -1.0, 1.0], np.float32)
  fake = np.array([-2.0, 0.3, 1.5, -1.0], np.float32)
  d, d_real, d_fake = losses.discriminator_loss("hinge", real, fake)
  np.testing.assert_allclose(d_real.numpy(), np.mean(np.maximum(0, 1 - real)), rtol=1e-6)
  np.testing.assert_allclose(d_fake.numpy(), np.mean(np.maximum(0, 1 + fake)), rtol=1e-6)
  np.testing.assert_allclose(d.numpy(), d_real.numpy() + d_fake.numpy(), rtol=1e-6)
  np.testing.assert_allclose(losses.generator_loss("hinge", fake).numpy(), -fake.mean(), rtol=1e-6)


def test_kl_losses_match_numpy():
  real = np.array([2.0, -0.5], np.float32)
  fake = np.array([-1.0, 0.25], np.float32)
  d, d_real, d_fake = losses.discriminator_loss("kl", real, fake)
  softplus = lambda x: np.log1p(np.exp(x))
  np.testing.assert_allclose(d_real.numpy(), softplus(-real).mean(), rtol=1e-6)
  np.testing.assert_allclose(d_fake.numpy(), softplus(fake).mean(), rtol=1e-6)
  np.testing.assert_allclose(losses.generator_loss("kl", fake).numpy(), -fake.mean(), rtol=1e-6)


def test_unknown_loss_is_an_error():
  with pytest.raises(ValueError, match="wasserstein"):
    losses.generator_loss("wasserstein", np.zeros(2, np.float32))
