"""Real statistics are computed once per key, then loaded from the .npz cache."""

import dataclasses

import numpy as np
import pytest

from sagan_tf.eval import metrics, stats_cache, stream


class _CountingClassifier:
  """Features = a fixed projection of the pixels; counts its calls."""

  def __init__(self, dim=40, num_logits=5):
    self.name, self.num_classes, self.feature_dim = "counting", num_logits, dim
    self.calls = 0
    self._proj = np.random.RandomState(0).normal(size=(4 * 4 * 3, dim)).astype(np.float32)

  def __call__(self, images):
    self.calls += 1
    feats = np.asarray(images).reshape(len(images), -1) @ self._proj
    return {"features": feats, "logits": feats[:, :self.num_classes]}


def _batches(n=90, batch=16, seed=0):
  rng = np.random.RandomState(seed)
  images = rng.uniform(-1, 1, size=(n, 4, 4, 3)).astype(np.float32)
  labels = rng.randint(0, 3, n)
  return [(images[i:i + batch], labels[i:i + batch]) for i in range(0, n, batch)]


KEY = stats_cache.StatsKey(dataset="shapes", image_size=4, classifier="counting",
                           num_samples=80, split="test", intra_classes=(0, 2))


def _compute(net, key=KEY):
  return lambda: stream.accumulate(net, _batches(), key.num_samples, key.intra_classes)


def test_second_call_loads_instead_of_running_the_classifier(tmp_path):
  net = _CountingClassifier()
  first = stats_cache.load_or_compute(str(tmp_path), KEY, _compute(net))
  calls = net.calls
  assert calls == 5 and first.features.count == 80
  assert first.features.cov is not None  # 80 > 40 dims: full covariance
  second = stats_cache.load_or_compute(str(tmp_path), KEY, _compute(net))
  assert net.calls == calls
  np.testing.assert_array_equal(second.features.mean, first.features.mean)
  np.testing.assert_array_equal(second.features.covariance(), first.features.covariance())
  np.testing.assert_array_equal(second.logits.mean_p, first.logits.mean_p)
  assert second.logits.score() == first.logits.score()
  assert second.label_accuracy == first.label_accuracy
  assert sorted(second.per_class) == [0, 2]
  for c in (0, 2):  # per-class sets are small: stored as low-rank factors
    assert second.per_class[c].factor is not None
    np.testing.assert_array_equal(second.per_class[c].factor, first.per_class[c].factor)
    assert metrics.frechet_distance(second.per_class[c], first.per_class[c]) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("change", [
    {"num_samples": 64}, {"classifier": "other"}, {"split": "train"},
    {"image_size": 8}, {"dataset": "tfrecords:x"}, {"part": 1}, {"intra_classes": ()}])
def test_any_change_of_the_key_recomputes(tmp_path, change):
  net = _CountingClassifier()
  stats_cache.load_or_compute(str(tmp_path), KEY, _compute(net))
  calls = net.calls
  other = dataclasses.replace(KEY, **change)
  assert other.filename() != KEY.filename()
  stats_cache.load_or_compute(str(tmp_path), other, _compute(net, other))
  assert net.calls > calls


def test_a_corrupt_cache_file_is_recomputed_not_fatal(tmp_path):
  net = _CountingClassifier()
  path = stats_cache.path_for(str(tmp_path), KEY)
  stats_cache.load_or_compute(str(tmp_path), KEY, _compute(net))
  with open(path, "wb") as f:
    f.write(b"not an npz")
  calls = net.calls
  stats = stats_cache.load_or_compute(str(tmp_path), KEY, _compute(net))
  assert net.calls > calls and stats.features.count == 80


def test_accumulate_stops_at_num_samples_and_warns_when_the_stream_is_short():
  net = _CountingClassifier()
  stats = stream.accumulate(net, _batches(n=40), 80)
  assert stats.features.count == 40
  with pytest.raises(ValueError, match="ended after 40"):
    stream.accumulate(net, _batches(n=40), 80, allow_fewer=False)
