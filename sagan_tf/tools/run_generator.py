"""Choices shared by the sample and attention tools: which classes, which truncation.

(Their run's Config and generator come from sagan_tf.run_dir.restore_for_mode.)
"""

from __future__ import annotations

from typing import Tuple

from sagan_tf.errors import UserError


def choose_labels(labels, num_classes: int, default_count: int) -> Tuple[int, ...]:
  """cfg.labels checked against the model, or `default_count` classes spread evenly.

  Raises UserError naming the label and the model's class range.
  """
  if labels:
    bad = [int(l) for l in labels if not 0 <= int(l) < num_classes]
    if bad:
      raise UserError(f"--labels has {bad}, outside this model's classes 0..{num_classes - 1}.")
    return tuple(int(l) for l in labels)
  count = min(default_count, num_classes)
  if count == num_classes:
    return tuple(range(num_classes))
  step = (num_classes - 1) / max(1, count - 1)
  return tuple(sorted({int(round(i * step)) for i in range(count)}))


def check_truncation(truncation: float) -> float:
  """UserError unless 0 < truncation <= 1 (see sagan_tf.export.sample_latents)."""
  if not 0.0 < truncation <= 1.0:
    raise UserError(f"--truncation={truncation} must be in (0, 1]: 1 samples z ~ N(0,1), "
                    "t < 1 samples t * (N(0,1) truncated to [-2, 2]).")
  return float(truncation)
