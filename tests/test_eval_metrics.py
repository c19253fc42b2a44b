"""IS / FID / intra-FID: TF-GAN's one-shot functions, our streamed ones, scipy."""

import numpy as np
import pytest
import scipy.linalg
import scipy.special

from sagan_tf.eval import metrics


def _activations(n, d, seed, shift=0.0):
  """Correlated, non-negative-ish activations like pool_3 (not white noise)."""
  rng = np.random.RandomState(seed)
  mix = rng.normal(size=(d, d)) / np.sqrt(d)
  return (rng.normal(size=(n, d)) @ mix + shift + 0.5).astype(np.float32)


def _scipy_fid(a, b):
  a, b = a.astype(np.float64), b.astype(np.float64)
  mu1, mu2 = a.mean(0), b.mean(0)
  c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  root = scipy.linalg.sqrtm(c1 @ c2).real
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(root))


def _numpy_inception_score(logits):
  logits = logits.astype(np.float64)
  log_p = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
  p = np.exp(log_p)
  q = p.mean(0)
  return float(np.exp(np.mean(np.sum(p * (log_p - np.log(q)), axis=1))))


def _rel(a, b):
  return abs(a - b) / max(abs(b), 1e-12)


def test_tfgan_inception_score_matches_numpy_reference():
  logits = np.random.RandomState(0).normal(0, 3, size=(500, 40)).astype(np.float32)
  assert _rel(metrics.classifier_score(logits), _numpy_inception_score(logits)) <= 1e-3


def test_tfgan_fid_matches_scipy_sqrtm_reference():
  a, b = _activations(400, 24, 1), _activations(300, 24, 2, shift=0.3)
  assert _rel(metrics.frechet_distance_from_activations(a, b), _scipy_fid(a, b)) <= 1e-3


def test_fid_from_stats_equals_tfgan_on_the_same_activations():
  a, b = _activations(400, 24, 3), _activations(350, 24, 4, shift=-0.2)
  ours = float(metrics.frechet_distance_from_stats(
      a.mean(0, dtype=np.float64), np.cov(a.astype(np.float64), rowvar=False),
      b.mean(0, dtype=np.float64), np.cov(b.astype(np.float64), rowvar=False)))
  tfgan = metrics.frechet_distance_from_activations(a, b)
  assert _rel(ours, tfgan) <= 1e-6
  assert _rel(ours, _scipy_fid(a, b)) <= 1e-3


def test_fid_of_a_set_with_itself_is_zero():
  a = _activations(300, 16, 5)
  acc = metrics.MomentAccumulator(16)
  acc.update(a)
  s = acc.stats()
  assert abs(metrics.frechet_distance(s, s)) < 1e-6
  assert abs(metrics.frechet_distance_from_activations(a, a)) < 1e-3


@pytest.mark.parametrize("n,d,batch", [(200, 8, 7), (200, 8, 64), (50, 64, 16), (130, 64, 33)])
def test_streamed_moments_equal_one_shot(n, d, batch):
  """Batches of any size, below the row threshold (n < d), above it and across."""
  a, b = _activations(n, d, 6), _activations(n + 10, d, 7, shift=0.1)
  stats = []
  for x in (a, b):
    acc = metrics.MomentAccumulator(d)
    for size in metrics.split_batches(len(x), batch):
      acc.update(x[acc.count:acc.count + size])
    stats.append(acc.stats())
  np.testing.assert_allclose(stats[0].mean, a.mean(0, dtype=np.float64), atol=1e-10)
  np.testing.assert_allclose(stats[0].covariance(), np.cov(a.astype(np.float64), rowvar=False),
                             atol=1e-10)
  streamed = metrics.frechet_distance(*stats)
  assert _rel(streamed, metrics.frechet_distance_from_activations(a, b)) <= 1e-6


def test_low_rank_factor_path_equals_full_covariance_path():
  """Fewer vectors than dimensions (one ImageNet class): factor maths = full maths."""
  small1, small2 = _activations(20, 48, 8), _activations(30, 48, 9, shift=0.2)
  big = _activations(200, 48, 10)
  def stats(x):
    acc = metrics.MomentAccumulator(48)
    acc.update(x)
    return acc.stats()
  s1, s2, s3 = stats(small1), stats(small2), stats(big)
  assert s1.factor is not None and s3.cov is not None
  for x, y in ((s1, s2), (s1, s3), (s3, s2)):
    full = float(metrics.frechet_distance_from_stats(x.mean, x.covariance(),
                                                     y.mean, y.covariance()))
    assert _rel(metrics.frechet_distance(x, y), full) <= 1e-6
  assert _rel(metrics.frechet_distance(s1, s2),
              metrics.frechet_distance_from_activations(small1, small2)) <= 1e-4


def test_moments_stay_accurate_far_from_the_origin():
  """Chan's merge: no cancellation when the mean dwarfs the spread."""
  x = _activations(400, 8, 11, shift=1e5).astype(np.float64)
  acc = metrics.MomentAccumulator(8)
  for i in range(0, 400, 50):
    acc.update(x[i:i + 50])
  np.testing.assert_allclose(acc.stats().cov, np.cov(x, rowvar=False), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("batch", [1, 37, 600])
def test_streamed_classifier_score_equals_tfgan_one_shot(batch):
  logits = np.random.RandomState(12).normal(0, 4, size=(600, 30)).astype(np.float32)
  acc = metrics.LogitAccumulator(30)
  for i in range(0, 600, batch):
    acc.update(logits[i:i + batch])
  assert _rel(acc.stats().score(), metrics.classifier_score(logits)) <= 1e-9


def test_intra_fid_is_the_mean_of_per_class_fids():
  rng = np.random.RandomState(13)
  d, classes = 6, (0, 2, 3)
  real, fake = _activations(600, d, 14), _activations(500, d, 15, shift=0.3)
  real_y, fake_y = rng.randint(0, 4, 600), rng.randint(0, 4, 500)
  accs = []
  for x, y in ((real, real_y), (fake, fake_y)):
    acc = metrics.EvalAccumulator(d, 5, intra_classes=classes)
    for i in range(0, len(x), 64):
      acc.update({"features": x[i:i + 64], "logits": x[i:i + 64, :5]}, y[i:i + 64])
    accs.append(acc.stats())
  mean, per_class = metrics.intra_frechet_distance(accs[0].per_class, accs[1].per_class)
  expected = {c: metrics.frechet_distance_from_activations(real[real_y == c], fake[fake_y == c])
              for c in classes}
  assert sorted(per_class) == list(classes)
  for c in classes:
    assert _rel(per_class[c], expected[c]) <= 1e-5
  assert _rel(mean, np.mean(list(expected.values()))) <= 1e-5


def test_label_accuracy_counts_argmax_agreement():
  acc = metrics.EvalAccumulator(3, 3)
  logits = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
  acc.update({"features": np.random.RandomState(0).rand(4, 3), "logits": logits},
             np.array([0, 1, 1, 0]))
  assert acc.stats().label_accuracy == pytest.approx(0.75)


def test_intra_classes_spreads_requested_classes():
  assert metrics.intra_classes(1000, 0) == ()
  assert metrics.intra_classes(10, -1) == tuple(range(10))
  assert metrics.intra_classes(1000, 4) == (0, 250, 500, 750)
