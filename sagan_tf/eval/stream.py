"""Run a classifier over a stream of image batches into `EvalStats`.

Only running sums are kept (metrics.EvalAccumulator), so the number of images
is bounded by time, not memory. Long streams log images/s and an ETA.
"""

from __future__ import annotations

import time
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np
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
  When the stream ends early, logs a warning and uses what it had (or raises
  ValueError when `allow_fewer` is False).
  """
  acc = metrics.EvalAccumulator(classifier.feature_dim, classifier.num_classes,
                                intra_classes)
  progress = StreamProgress(num_samples, what, log_every_secs)
  for images, labels in batches:
    take = min(int(images.shape[0]), num_samples - acc.count)
    if take <= 0:
      break
    images = images[:take]
    labels = None if labels is None else np.asarray(labels)[:take]
    acc.update(classifier(images), labels)
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
