"""IS, FID and intra-FID, one-shot (TF-GAN, as the original) and streamed.

One-shot, the original's functions (eval_imagenet.py):
  `classifier_score(logits)`              TF-GAN classifier_score_from_logits
  `frechet_distance_from_activations(a, b)` TF-GAN frechet_classifier_distance_from_activations

Streamed, so that 50,000 generated images are never held at once:
  `MomentAccumulator`  running mean and centred sum of outer products, float64
                       (rows are kept verbatim while there are fewer than D of
                       them, which is both exact and smaller than D x D)
  `LogitAccumulator`   running sum of p(y|x) and of sum_y p log p, float64:
                       exactly the quantities TF-GAN's IS formula needs
  `EvalAccumulator`    both, plus per-class moments (intra-FID) and
                       agreement of argmax(logits) with the labels
  `frechet_distance_from_stats(mu1, cov1, mu2, cov2)`  float64 TF, eigh-based

The math is pure (numpy / TF functions of arrays); the accumulators only own
running sums. Tests hold every number against TF-GAN and scipy.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from sagan_tf.eval import tfgan


# --------------------------------------------------------------- one-shot (TF-GAN)
def classifier_score(logits) -> float:
  """Inception / classifier score of logits [N, C]: TF-GAN's function.

  Fed float64 (TF-GAN casts to float64 inside anyway), so the result is not
  rounded back to float32 on the way out.
  """
  return float(tfgan.classifier_score_from_logits(tf.cast(logits, tf.float64)))


def frechet_distance_from_activations(activations1, activations2) -> float:
  """FID / FCD of activations [N1, D] and [N2, D]: TF-GAN's function (float64)."""
  return float(tfgan.frechet_classifier_distance_from_activations(
      tf.cast(activations1, tf.float64), tf.cast(activations2, tf.float64)))


# ------------------------------------------------------------- Fréchet distance
def _sqrt_psd(mat: tf.Tensor) -> tf.Tensor:
  """Symmetric square root of a symmetric PSD matrix (eigh; negatives -> 0)."""
  w, v = tf.linalg.eigh(mat)
  return tf.matmul(v * tf.sqrt(tf.maximum(w, 0.0)), v, transpose_b=True)


def _sum_sqrt_eigvals(sym: tf.Tensor) -> tf.Tensor:
  """sum_i sqrt(lambda_i) of a symmetric PSD matrix = trace(sqrt(sym))."""
  sym = 0.5 * (sym + tf.transpose(sym))
  return tf.reduce_sum(tf.sqrt(tf.maximum(tf.linalg.eigvalsh(sym), 0.0)))


def trace_sqrt_product(cov1, cov2) -> tf.Tensor:
  """trace(sqrt(cov1 @ cov2)) for symmetric PSD matrices, in float64.

  cov1 @ cov2 is not symmetric, but with A = sqrt(cov1) it has the eigenvalues
  of A @ cov2 @ A, which is: trace(sqrt(cov1 cov2)) = sum sqrt(eig(A cov2 A)).
  The same identity TF-GAN uses; we take both roots by eigendecomposition.
  """
  cov1 = tf.convert_to_tensor(cov1, tf.float64)
  cov2 = tf.convert_to_tensor(cov2, tf.float64)
  root1 = _sqrt_psd(cov1)
  return _sum_sqrt_eigvals(tf.matmul(root1, tf.matmul(cov2, root1)))


def frechet_distance_from_stats(mu1, cov1, mu2, cov2) -> tf.Tensor:
  """|mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr(sqrt(cov1 cov2)), float64 scalar."""
  mu1 = tf.convert_to_tensor(mu1, tf.float64)
  mu2 = tf.convert_to_tensor(mu2, tf.float64)
  cov1 = tf.convert_to_tensor(cov1, tf.float64)
  cov2 = tf.convert_to_tensor(cov2, tf.float64)
  mean_term = tf.reduce_sum(tf.math.squared_difference(mu1, mu2))
  return (mean_term + tf.linalg.trace(cov1) + tf.linalg.trace(cov2)
          - 2.0 * trace_sqrt_product(cov1, cov2))


@dataclasses.dataclass(frozen=True)
class GaussianStats:
  """Sample mean and unbiased covariance of `count` vectors of size D (float64).

  Exactly one of `cov` [D, D] and `factor` [count, D] is set; with the factor
  (used while count <= D, e.g. 50 images of one ImageNet class against
  D = 2048), cov = factor^T @ factor and nothing D x D is ever formed.
  """
  count: int
  mean: np.ndarray
  cov: Optional[np.ndarray] = None
  factor: Optional[np.ndarray] = None

  @property
  def dim(self) -> int:
    return int(self.mean.shape[0])

  def covariance(self) -> np.ndarray:
    """The full [D, D] covariance (formed from the factor when needed)."""
    if self.cov is not None:
      return self.cov
    return self.factor.T @ self.factor

  def trace(self) -> float:
    if self.cov is not None:
      return float(np.trace(self.cov))
    return float(np.sum(np.square(self.factor)))


def frechet_distance(stats1: GaussianStats, stats2: GaussianStats) -> float:
  """Fréchet distance of two Gaussians; exploits low-rank factors when present.

  With cov1 = A^T A (A: n1 x D): trace(sqrt(cov1 cov2)) = sum sqrt(eig(A cov2 A^T)),
  an n1 x n1 problem; with both factored it is the sum of singular values of
  A B^T. Same value as `frechet_distance_from_stats` on the full matrices.
  """
  if stats1.dim != stats2.dim:
    raise ValueError(f"Feature sizes differ: {stats1.dim} vs {stats2.dim}.")
  mean_term = float(np.sum(np.square(stats1.mean - stats2.mean)))
  if stats1.factor is None and stats2.factor is None:
    return float(frechet_distance_from_stats(stats1.mean, stats1.cov,
                                             stats2.mean, stats2.cov))
  if stats1.factor is not None and stats2.factor is not None:
    a = tf.constant(stats1.factor, tf.float64)
    b = tf.constant(stats2.factor, tf.float64)
    cross = float(tf.reduce_sum(tf.linalg.svd(tf.matmul(a, b, transpose_b=True),
                                              compute_uv=False)))
  else:
    low, full = (stats1, stats2) if stats1.factor is not None else (stats2, stats1)
    a = tf.constant(low.factor, tf.float64)
    cross = float(_sum_sqrt_eigvals(
        tf.matmul(a, tf.matmul(tf.constant(full.cov, tf.float64), a, transpose_b=True))))
  return mean_term + stats1.trace() + stats2.trace() - 2.0 * cross


# ------------------------------------------------------------------ accumulators
def _to_numpy(x) -> np.ndarray:
  return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


class MomentAccumulator:
  """Streaming mean and covariance of vectors [B, D], float64.

  Rows are kept as they come (exact, count x D memory) until there are D of
  them; from then on the state is (count, mean, centred scatter) merged batch
  by batch with Chan et al.'s pairwise update, which avoids the cancellation
  of sum(x x^T) - n mu mu^T. Memory is min(count, D) x D either way.
  """

  def __init__(self, dim: int):
    self.dim = int(dim)
    self.count = 0
    self._rows = []
    self._mean: Optional[np.ndarray] = None
    self._scatter: Optional[np.ndarray] = None

  def update(self, x) -> None:
    x = _to_numpy(x)
    if x.ndim != 2 or x.shape[1] != self.dim:
      raise ValueError(f"Expected activations [B, {self.dim}], got {x.shape}.")
    if not x.shape[0]:
      return
    if self._scatter is None:
      self._rows.append(np.array(x, copy=True))
      self.count += x.shape[0]
      if self.count >= self.dim:
        rows = np.concatenate(self._rows).astype(np.float64)
        self._rows = []
        self._mean = rows.mean(axis=0)
        centred = rows - self._mean
        self._scatter = centred.T @ centred
      return
    x = x.astype(np.float64)
    n_b = x.shape[0]
    mean_b = x.mean(axis=0)
    centred = x - mean_b
    n = self.count + n_b
    delta = mean_b - self._mean
    self._scatter += centred.T @ centred + np.outer(delta, delta) * (self.count * n_b / n)
    self._mean += delta * (n_b / n)
    self.count = n

  def stats(self) -> GaussianStats:
    """Mean and unbiased (n - 1) covariance, the estimator TF-GAN uses."""
    if self.count < 2:
      raise ValueError(f"Need at least 2 vectors for a covariance, have {self.count}.")
    if self._scatter is None:
      rows = np.concatenate(self._rows).astype(np.float64)
      mean = rows.mean(axis=0)
      return GaussianStats(self.count, mean,
                           factor=(rows - mean) / np.sqrt(self.count - 1.0))
    return GaussianStats(self.count, self._mean.copy(),
                         cov=self._scatter / (self.count - 1.0))


@dataclasses.dataclass(frozen=True)
class LogitStats:
  """What the classifier score needs from N logit vectors (float64)."""
  count: int
  mean_p: np.ndarray        # [C] marginal p(y) = mean_x p(y|x)
  mean_plogp: float         # mean_x sum_y p(y|x) log p(y|x)

  def score(self) -> float:
    """exp(E_x KL(p(y|x) || p(y))) = exp(mean_plogp - sum_y p(y) log p(y))."""
    q = self.mean_p
    q_log_q = np.sum(np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0))
    return float(np.exp(self.mean_plogp - q_log_q))


class LogitAccumulator:
  """Streaming classifier score (IS for Inception logits).

  E_x KL(p(y|x) || p(y)) = E_x sum_y p log p - sum_y p(y) log p(y) with
  p(y) = E_x p(y|x): two running sums reproduce TF-GAN's one-shot value on all
  logits (tests: relative error ~1e-12) in O(C) memory instead of N x C.
  """

  def __init__(self, num_classes: int):
    self.num_classes = int(num_classes)
    self.count = 0
    self._sum_p = np.zeros([self.num_classes], np.float64)
    self._sum_plogp = 0.0

  def update(self, logits) -> None:
    logits = _to_numpy(logits).astype(np.float64)
    if logits.ndim != 2 or logits.shape[1] != self.num_classes:
      raise ValueError(f"Expected logits [B, {self.num_classes}], got {logits.shape}.")
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.sum(np.exp(log_p), axis=1, keepdims=True))
    p = np.exp(log_p)
    self._sum_p += p.sum(axis=0)
    self._sum_plogp += float(np.sum(p * log_p))
    self.count += logits.shape[0]

  def stats(self) -> LogitStats:
    if not self.count:
      raise ValueError("No logits were accumulated.")
    return LogitStats(self.count, self._sum_p / self.count,
                      self._sum_plogp / self.count)


@dataclasses.dataclass(frozen=True)
class EvalStats:
  """Everything one image set contributes to IS / FID / intra-FID."""
  features: GaussianStats
  logits: LogitStats
  per_class: Dict[int, GaussianStats]
  label_accuracy: Optional[float]   # argmax(logits) == label, when labels given


class EvalAccumulator:
  """Streams classifier outputs of one image set into `EvalStats`.

  Args:
    feature_dim: size of the features FID uses (2048 for Inception pool_3).
    num_logits: size of the logits IS uses (1008 for Inception).
    intra_classes: classes whose own moments are kept for intra-FID.
  """

  def __init__(self, feature_dim: int, num_logits: int,
               intra_classes: Iterable[int] = ()):
    self.features = MomentAccumulator(feature_dim)
    self.logits = LogitAccumulator(num_logits)
    self.per_class = {int(c): MomentAccumulator(feature_dim) for c in intra_classes}
    self._correct = 0
    self._labelled = 0

  @property
  def count(self) -> int:
    return self.features.count

  def update(self, outputs: Mapping[str, tf.Tensor], labels=None) -> None:
    """outputs: {'features': [B, D], 'logits': [B, C]}; labels: int [B] or None."""
    features = _to_numpy(outputs["features"])
    logits = _to_numpy(outputs["logits"])
    self.features.update(features)
    self.logits.update(logits)
    if labels is None:
      if self.per_class:
        raise ValueError("Per-class statistics need the labels.")
      return
    labels = _to_numpy(labels).astype(np.int64).reshape(-1)
    self._correct += int(np.sum(np.argmax(logits, axis=1) == labels))
    self._labelled += labels.shape[0]
    for c, acc in self.per_class.items():
      rows = features[labels == c]
      if rows.shape[0]:
        acc.update(rows)

  def stats(self) -> EvalStats:
    per_class = {}
    for c, acc in sorted(self.per_class.items()):
      if acc.count >= 2:
        per_class[c] = acc.stats()
      else:
        logging.warning("Class %d has %d image(s); left out of intra-FID.", c, acc.count)
    accuracy = self._correct / self._labelled if self._labelled else None
    return EvalStats(self.features.stats(), self.logits.stats(), per_class, accuracy)


# -------------------------------------------------------------------- intra-FID
def intra_frechet_distance(
    per_class1: Mapping[int, GaussianStats],
    per_class2: Mapping[int, GaussianStats]) -> Tuple[float, Dict[int, float]]:
  """Mean over classes of the per-class Fréchet distance, and the per-class values.

  Only classes present in both sets count; raises when there is none.
  """
  shared = sorted(set(per_class1) & set(per_class2))
  if not shared:
    raise ValueError("No class has statistics in both sets; intra-FID is undefined.")
  per = {c: frechet_distance(per_class1[c], per_class2[c]) for c in shared}
  return float(np.mean(list(per.values()))), per


def intra_classes(num_classes: int, requested: int) -> Tuple[int, ...]:
  """Classes used for intra-FID: `requested` evenly spread ones, -1 = all, 0 = none."""
  if requested == 0:
    return ()
  if requested < 0 or requested >= num_classes:
    return tuple(range(num_classes))
  return tuple(sorted({i * num_classes // requested for i in range(requested)}))


def split_batches(n: int, batch_size: int) -> Sequence[int]:
  """Batch sizes that sum to n: full batches, then the remainder."""
  sizes = [batch_size] * (n // batch_size)
  if n % batch_size:
    sizes.append(n % batch_size)
  return sizes
