"""Run a classifier over a stream of image batches into `EvalStats`.

Only running sums are kept (metrics.EvalAccumulator), so the number of images
is bounded by time, not memory. Long streams log images/s and an ETA.

`ReplicaScorer` runs the classifier (and, for generated images, the
generator) over a tf.distribute strategy's replicas: every global batch is
cut into one equal slice per replica, the per-image outputs are gathered back
in replica order, and the host accumulates them exactly as it would on one
device, so the statistics do not depend on the replica count. Under
MultiWorkerMirroredStrategy every worker takes part and every worker gets
the whole batch's outputs.
"""

from __future__ import annotations

import time
from typing import Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from sagan_tf.eval import metrics


class StreamProgress:
  """Logs `done/total`, images/s and ETA at most every `every_secs` seconds."""

  def __init__(self, total: int, what: str, every_secs: float = 30.0):
    self.total, self.what, self.every_secs = int(total), what, every_secs
    self.start = self._last = time.time()
    self.done = 0

  def update(self, n: int) -> None:
    self.done += int(n)
    now = time.time()
    if now - self._last >= self.every_secs or self.done >= self.total:
      self._last = now
      rate = self.done / max(now - self.start, 1e-9)
      eta = (self.total - self.done) / rate if rate > 0 else float("inf")
      logging.info("%s: %d/%d images, %.1f images/s, ETA %.0f s.", self.what,
                   self.done, self.total, rate, max(eta, 0.0))

  @property
  def rate(self) -> float:
    return self.done / max(time.time() - self.start, 1e-9)


def accumulate(classifier, batches: Iterable[Tuple[object, Optional[object]]],
               num_samples: int, intra_classes: Sequence[int] = (),
               what: str = "images", log_every_secs: float = 30.0,
               allow_fewer: bool = True) -> metrics.EvalStats:
  """Classifier outputs of the first `num_samples` images of `batches`.

  batches: (images float32 [B, H, W, 3] in [-1, 1], int labels [B] or None).
  `classifier` is a Classifier or a ReplicaScorer (its `classify`).
  When the stream ends early, logs a warning and uses what it had (or raises
  ValueError when `allow_fewer` is False).
  """
  classify = getattr(classifier, "classify", classifier)
  outputs = ((classify(images), labels) for images, labels in batches)
  return accumulate_outputs(outputs, classifier.feature_dim, classifier.num_classes,
                            num_samples, intra_classes, what, log_every_secs, allow_fewer)


def accumulate_outputs(outputs: Iterable[Tuple[Mapping[str, object], Optional[object]]],
                       feature_dim: int, num_logits: int, num_samples: int,
                       intra_classes: Sequence[int] = (), what: str = "images",
                       log_every_secs: float = 30.0,
                       allow_fewer: bool = True) -> metrics.EvalStats:
  """`EvalStats` of the first `num_samples` rows of a stream of classifier outputs.

  outputs: ({'features': [B, D], 'logits': [B, C]}, int labels [B] or None).
  """
  acc = metrics.EvalAccumulator(feature_dim, num_logits, intra_classes)
  progress = StreamProgress(num_samples, what, log_every_secs)
  for out, labels in outputs:
    take = min(int(out["features"].shape[0]), num_samples - acc.count)
    if take <= 0:
      break
    out = {k: out[k][:take] for k in ("features", "logits")}
    labels = None if labels is None else np.asarray(labels)[:take]
    acc.update(out, labels)
    progress.update(take)
    if acc.count >= num_samples:
      break
  if acc.count < num_samples:
    message = (f"{what}: the stream ended after {acc.count} of the {num_samples} "
               "images asked for")
    if not allow_fewer:
      raise ValueError(message + ".")
    logging.warning("%s; using %d.", message, acc.count)
  return acc.stats()


def eval_latents(seed, index, batch: int, z_dim: int, num_classes: int):
  """(z float32 [batch, z_dim] ~ N(0, 1), labels int32 [batch] uniform) of eval batch `index`.

  Stateless in (seed, index): the same for any replica count, device or
  order in which batches are drawn.
  """
  key = tf.cast(tf.stack([seed, 2 * index]), tf.int64)
  z = tf.random.stateless_normal([batch, z_dim], seed=key)
  labels = tf.random.stateless_uniform([batch], seed=key + [0, 1], minval=0,
                                       maxval=num_classes, dtype=tf.int32)
  return z, labels


class ReplicaScorer:
  """A Classifier (and a generator) run over the replicas of `strategy`.

  A global batch of `batch` images is padded to a multiple of the replica
  count, replica r classifies rows [r * p, (r + 1) * p) and the outputs are
  gathered in replica order, then the padding is dropped: the host sees the
  per-image outputs of one device. strategy.run receives only tensors (the
  models live in the closure), as TPUStrategy requires; the classifier's
  and generator's variables should be created under strategy.scope().

  Attributes feature_dim and num_classes are the classifier's.
  """

  def __init__(self, strategy, classifier, batch: int):
    self.strategy = strategy
    self.classifier = classifier
    self.feature_dim = classifier.feature_dim
    self.num_classes = classifier.num_classes
    self.batch = int(batch)
    self.replicas = strategy.num_replicas_in_sync
    self.per_replica = -(-self.batch // self.replicas)  # ceil
    self._classify_fn = None
    self._generate = (None, None)  # (generator, its tf.function)

  def _gathered(self, per_replica: Mapping[str, object]) -> dict:
    return {k: self.strategy.gather(v, axis=0) for k, v in per_replica.items()}

  def _replica_rows(self, x):
    """This replica's slice of a padded global batch (inside strategy.run)."""
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    start = tf.cast(replica, tf.int32) * self.per_replica
    # tf.slice with a static size: a static shape, as XLA needs.
    rank = len(x.shape)
    return tf.slice(x, tf.stack([start] + [0] * (rank - 1)),
                    [self.per_replica] + [-1] * (rank - 1))

  def _classifier_outputs(self, images):
    out = self.classifier.fn(tf.cast(images, tf.float32))
    return {"features": out["features"], "logits": out["logits"]}

  def classify(self, images) -> dict:
    """{'features': [b, D], 'logits': [b, C]} numpy for images [b <= batch, H, W, 3]."""
    images = tf.convert_to_tensor(images, tf.float32)
    b = int(images.shape[0])
    if b > self.batch:
      raise ValueError(f"A batch of {b} images; this scorer takes at most {self.batch}.")
    padded = tf.pad(images, [[0, self.per_replica * self.replicas - b], [0, 0], [0, 0],
                             [0, 0]])
    if self._classify_fn is None:
      strategy = self.strategy

      @tf.function
      def classify_fn(padded):
        out = strategy.run(lambda x: self._classifier_outputs(self._replica_rows(x)),
                           args=(padded,))
        return self._gathered(out)

      self._classify_fn = classify_fn
    return {k: v.numpy()[:b] for k, v in self._classify_fn(padded).items()}

  def generate_and_classify(self, generator, seed: int, index: int, z_dim: int,
                            num_classes: int) -> Tuple[dict, np.ndarray]:
    """(outputs, labels [batch]) of eval batch `index` (eval_latents(seed, index)).

    Each replica generates (generator(z, labels, training=False,
    update_u=False)) and classifies its slice of the batch.
    """
    traced_for, fn = self._generate
    if traced_for is not generator:
      strategy, batch = self.strategy, self.batch
      pad = self.per_replica * self.replicas - batch

      def replica_fn(seed, index):
        z, labels = eval_latents(seed, index, batch, z_dim, num_classes)
        z = self._replica_rows(tf.pad(z, [[0, pad], [0, 0]]))
        labels = self._replica_rows(tf.pad(labels, [[0, pad]]))
        images = generator(z, labels, training=False, update_u=False)
        return dict(self._classifier_outputs(images), labels=labels)

      @tf.function
      def fn(seed, index):
        return self._gathered(strategy.run(replica_fn, args=(seed, index)))

      self._generate = (generator, fn)
    out = fn(tf.constant(seed, tf.int64), tf.constant(index, tf.int64))
    out = {k: v.numpy()[:self.batch] for k, v in out.items()}
    labels = out.pop("labels")
    return out, labels
