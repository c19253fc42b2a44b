"""The shapes classifier: accurate on held-out real shapes, trained once, cached."""

import json

import numpy as np
import pytest

from sagan_tf.data import shapes
from sagan_tf.eval import classifiers


class _CountingPool:
  """The classifier's default pool (shapes "heldout" split), counting calls."""

  def __init__(self):
    self.calls = 0

  def __call__(self, n, size, seed, part):
    self.calls += 1
    return classifiers._heldout_shapes(n, size, seed, part)  # pylint: disable=protected-access


@pytest.mark.slow
def test_shapes_classifier_reaches_95_percent_on_real_shapes_and_is_cached(tmp_path):
  pool = _CountingPool()
  net = classifiers.shapes_classifier(str(tmp_path), image_size=32, seed=0, pool_fn=pool)
  assert net.test_accuracy >= 0.95
  # Independent check on the images evaluation compares against (split "test").
  images, labels = shapes.shapes_pool(1000, 32, 0, split="test")
  out = net(images.astype(np.float32) * (2 / 255) - 1)
  assert out["logits"].shape == (1000, 10) and out["features"].shape == (1000, 128)
  assert np.mean(np.argmax(out["logits"].numpy(), 1) == labels) >= 0.95
  trained_calls = pool.calls
  again = classifiers.shapes_classifier(str(tmp_path), image_size=32, seed=0, pool_fn=pool)
  assert pool.calls == trained_calls  # loaded, not retrained
  assert again.name == net.name and again.test_accuracy == net.test_accuracy
  np.testing.assert_allclose(again(images[:8] * (2 / 255) - 1)["logits"],
                             out["logits"][:8], atol=1e-4)


def test_a_cached_shapes_classifier_of_another_architecture_is_retrained(tmp_path):
  directory = tmp_path / "shapes_classifier_32_0"
  directory.mkdir()
  np.savez(directory / "weights.npz", w0=np.zeros([3, 3]))
  (directory / "meta.json").write_text('{"test_accuracy": 1.0}')
  net = classifiers.shapes_classifier(str(tmp_path), image_size=32, seed=0,
                                      train_images=10, test_images=50, max_epochs=0)
  assert net.test_accuracy < 0.5  # retrained (0 epochs here), not the stale 1.0
  assert net(np.zeros([2, 32, 32, 3], np.float32))["features"].shape == (2, 128)


def test_a_cached_shapes_classifier_of_another_rendering_is_retrained(tmp_path):
  pool = _CountingPool()
  tiny = dict(train_images=10, test_images=50, max_epochs=0)
  first = classifiers.shapes_classifier(str(tmp_path), image_size=32, seed=0,
                                        pool_fn=pool, **tiny)
  meta_path = tmp_path / "shapes_classifier_32_0" / "meta.json"
  meta = json.loads(meta_path.read_text())
  assert meta["rendering"] == shapes.RENDERING_VERSION
  calls = pool.calls
  classifiers.shapes_classifier(str(tmp_path), image_size=32, seed=0, pool_fn=pool, **tiny)
  assert pool.calls == calls  # same rendering: loaded, not retrained
  meta_path.write_text(json.dumps(dict(meta, rendering=shapes.RENDERING_VERSION - 1)))
  again = classifiers.shapes_classifier(str(tmp_path), image_size=32, seed=0,
                                        pool_fn=pool, **tiny)
  assert pool.calls > calls  # trained on the current rendering's images
  assert json.loads(meta_path.read_text())["rendering"] == shapes.RENDERING_VERSION
  assert again.test_accuracy == first.test_accuracy  # same seed, same data: same net
