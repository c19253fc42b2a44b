"""Inception from a local SavedModel: the loader, the 299 resize, the clear errors.

Uses a tiny fake module with the TF-Hub module's interface, built in tmp_path;
nothing is downloaded.
"""

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf.errors import UserError
from sagan_tf.eval import classifiers


@pytest.fixture(scope="module")
def fake_inception_dir(tmp_path_factory):
  return classifiers.build_fake_inception_savedmodel(
      str(tmp_path_factory.mktemp("inception") / "module"), seed=3)


@pytest.mark.parametrize("size", [32, 128])
def test_fake_inception_loads_through_load_inception_with_the_real_output_shapes(
    fake_inception_dir, size):
  net = classifiers.load_inception(fake_inception_dir)
  images = tf.random.uniform([3, size, size, 3], -1.0, 1.0, seed=1)
  out = net(images)
  assert out["logits"].shape == (3, 1008)
  assert out["pool_3"].shape == (3, 2048)
  np.testing.assert_array_equal(out["features"].numpy(), out["pool_3"].numpy())
  assert (net.num_classes, net.feature_dim) == (1008, 2048)


@pytest.mark.parametrize("size", [32, 128])
def test_images_are_resized_to_299_bilinearly_before_the_network(fake_inception_dir, size):
  raw = tf.saved_model.load(fake_inception_dir)
  images = tf.random.uniform([2, size, size, 3], -1.0, 1.0, seed=2)
  with pytest.raises((ValueError, TypeError)):
    raw(images)  # the module only takes 299x299: without the resize nothing runs
  expected = raw(tf.compat.v1.image.resize_bilinear(
      images, [299, 299], align_corners=False, half_pixel_centers=False))
  got = classifiers.load_inception(fake_inception_dir)(images)
  np.testing.assert_allclose(got["pool_3"], expected["pool_3"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got["logits"], expected["logits"], rtol=1e-5, atol=1e-4)


def test_resize_uses_the_tf1_sampling_grid_not_half_pixel_centres():
  images = tf.random.uniform([1, 32, 32, 3], seed=3)
  legacy = classifiers.resize_for_inception(images)
  assert legacy.shape == (1, 299, 299, 3)
  # TF1 resize_bilinear maps output pixel 0 exactly onto input pixel 0.
  np.testing.assert_allclose(legacy[0, 0, 0], images[0, 0, 0], atol=1e-6)
  assert float(tf.reduce_max(tf.abs(legacy - tf.image.resize(images, [299, 299])))) > 1e-3


@pytest.mark.parametrize("make_path", [
    lambda tmp: "",
    lambda tmp: str(tmp / "no_such_dir"),
    lambda tmp: str(tmp),                        # exists, but no saved_model.pb
])
def test_missing_inception_path_says_what_to_download_and_which_flag(tmp_path, make_path):
  with pytest.raises(UserError) as err:
    classifiers.load_inception(make_path(tmp_path))
  message = str(err.value)
  assert "tensorflow/tfgan/eval/inception/1" in message
  assert "--inception_path" in message
  assert "http" not in message


def test_a_module_with_only_a_signature_is_called_through_it(tmp_path):
  """TF1-style hub exports are not callable; their 'default' signature is used."""
  inner = classifiers._FakeInception(seed=4)  # pylint: disable=protected-access
  holder = tf.Module()
  holder.inner = inner
  serve = tf.function(lambda images: inner(images), input_signature=[
      tf.TensorSpec([None, 299, 299, 3], tf.float32, name="images")])
  path = str(tmp_path / "sig_module")
  tf.saved_model.save(holder, path, signatures={"default": serve})
  images = tf.random.uniform([2, 64, 64, 3], -1.0, 1.0, seed=5)
  got = classifiers.load_inception(path)(images)
  expected = inner(classifiers.resize_for_inception(images))
  np.testing.assert_allclose(got["pool_3"], expected["pool_3"], rtol=1e-5, atol=1e-5)


def test_a_savedmodel_without_logits_and_pool_3_is_refused_clearly(tmp_path):
  class Other(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 299, 299, 3], tf.float32)])
    def __call__(self, images):
      return {"embedding": tf.reduce_mean(images, [1, 2])}
  path = str(tmp_path / "other")
  tf.saved_model.save(Other(), path)
  with pytest.raises(UserError, match="embedding.*--inception_path"):
    classifiers.load_inception(path)
