"""The trained generator of a run directory, for export, sample and attention.

The architecture comes from the run's config.json (what training wrote),
the typed flags go on top (config.merge), so `./run.sh sample
--model_dir=runs/x` works whatever preset trained runs/x.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

from absl import logging

from sagan_tf import config as config_lib

def tool_config(cfg, mode: str, typed=None):
  """The run's config.json merged with cfg for `mode` (config.merge), in float32."""
  from sagan_tf.train import checkpoints  # pylint: disable=g-import-not-at-top
  run_cfg = config_lib.merge(mode, cfg, typed, stored=checkpoints.load_run_config(cfg.model_dir))
  return dataclasses.replace(run_cfg, precision="float32")


def restore(cfg, mode: str = "sample", typed=None
            ) -> Tuple[object, object, int, Dict[str, str]]:
  """(run config, float32 generator, step, {"checkpoint": path, "weights": part}).

  mode, typed: as for config.merge (export, sample or attention; the typed fields).

  Weights are the EMA generator's when cfg.use_ema and the checkpoint has one.
  Raises UserError (from sagan_tf.train.checkpoints) when model_dir is not a
  run, has no checkpoint, or the checkpoint does not fit the stored config.
  """
  from sagan_tf.train import checkpoints  # pylint: disable=g-import-not-at-top
  run_cfg = tool_config(cfg, mode, typed)
  path = checkpoints.resolve_checkpoint(run_cfg.model_dir, run_cfg.checkpoint or None)
  has_ema = checkpoints.read_checkpoint(path).has("ema_generator")
  generator, step = checkpoints.restore_generator(run_cfg, path, use_ema=run_cfg.use_ema)
  weights = "ema_generator" if run_cfg.use_ema and has_ema else "generator"
  logging.info("Using the %s weights of %s (step %d).", weights, path, step)
  return run_cfg, generator, step, {"checkpoint": path, "weights": weights}


def choose_labels(labels, num_classes: int, default_count: int) -> Tuple[int, ...]:
  """cfg.labels checked against the model, or `default_count` classes spread evenly.

  Raises UserError naming the label and the model's class range.
  """
  from sagan_tf.errors import UserError  # pylint: disable=g-import-not-at-top
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
  from sagan_tf.errors import UserError  # pylint: disable=g-import-not-at-top
  if not 0.0 < truncation <= 1.0:
    raise UserError(f"--truncation={truncation} must be in (0, 1]: 1 samples z ~ N(0,1), "
                    "t < 1 samples t * (N(0,1) truncated to [-2, 2]).")
  return float(truncation)
