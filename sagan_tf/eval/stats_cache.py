"""Real-image statistics, computed once per key and cached as .npz files.

Evaluating a checkpoint needs the feature statistics of num_samples real
images (50,000 ImageNet images through Inception: the most expensive half of
an eval when repeated). They depend only on the key below, so they are
computed once and stored in `stats_dir` (local or gs://, through tf.io.gfile);
later evaluations, of any checkpoint of any run with the same key, load them.

Key: dataset, image size, split, classifier name (which carries a fingerprint
of its weights), number of samples, the intra-FID classes, `part` (0, 1, ...
for disjoint real sets, e.g. the real-vs-real floor) and, for the procedural
shapes data only, the seed that draws the real images. A readable file name
plus a hash of the full key; the key is also stored in the file and checked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from sagan_tf.eval import metrics

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class StatsKey:
  dataset: str
  image_size: int
  classifier: str
  num_samples: int
  split: str = ""
  intra_classes: Tuple[int, ...] = ()
  part: int = 0
  data_seed: int = -1   # when the seed picks the real images (shapes), else -1

  def as_dict(self) -> Dict:
    d = dataclasses.asdict(self)
    d["intra_classes"] = list(self.intra_classes)
    d["format_version"] = FORMAT_VERSION
    return d

  def filename(self) -> str:
    digest = hashlib.sha1(json.dumps(self.as_dict(), sort_keys=True).encode())
    slug = re.sub(r"[^A-Za-z0-9]+", "-", self.dataset).strip("-")[:40] or "data"
    intra = f"_intra{len(self.intra_classes)}" if self.intra_classes else ""
    return (f"real_{slug}_{self.split or 'default'}_{self.image_size}px_"
            f"{self.classifier}_{self.num_samples}{intra}_p{self.part}_"
            f"{'' if self.data_seed < 0 else f's{self.data_seed}_'}"
            f"{digest.hexdigest()[:10]}.npz")


# --------------------------------------------------------------- (de)serialise
def _put_gaussian(arrays: Dict[str, np.ndarray], prefix: str,
                  stats: metrics.GaussianStats) -> None:
  arrays[prefix + "count"] = np.asarray(stats.count, np.int64)
  arrays[prefix + "mean"] = stats.mean
  if stats.cov is not None:
    arrays[prefix + "cov"] = stats.cov
  else:
    arrays[prefix + "factor"] = stats.factor


def _get_gaussian(npz, prefix: str) -> metrics.GaussianStats:
  return metrics.GaussianStats(
      count=int(npz[prefix + "count"]), mean=npz[prefix + "mean"],
      cov=npz[prefix + "cov"] if prefix + "cov" in npz.files else None,
      factor=npz[prefix + "factor"] if prefix + "factor" in npz.files else None)


def to_bytes(stats: metrics.EvalStats, key: StatsKey) -> bytes:
  arrays: Dict[str, np.ndarray] = {
      "key_json": np.asarray(json.dumps(key.as_dict(), sort_keys=True)),
      "logits_count": np.asarray(stats.logits.count, np.int64),
      "logits_mean_p": stats.logits.mean_p,
      "logits_mean_plogp": np.asarray(stats.logits.mean_plogp, np.float64),
      "label_accuracy": np.asarray(np.nan if stats.label_accuracy is None
                                   else stats.label_accuracy, np.float64),
      "classes": np.asarray(sorted(stats.per_class), np.int64),
  }
  _put_gaussian(arrays, "features_", stats.features)
  for c, g in stats.per_class.items():
    _put_gaussian(arrays, f"class{c}_", g)
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  return buf.getvalue()


def from_bytes(data: bytes) -> Tuple[metrics.EvalStats, Dict]:
  with np.load(io.BytesIO(data)) as npz:
    key = json.loads(str(npz["key_json"]))
    accuracy = float(npz["label_accuracy"])
    stats = metrics.EvalStats(
        features=_get_gaussian(npz, "features_"),
        logits=metrics.LogitStats(int(npz["logits_count"]), npz["logits_mean_p"],
                                  float(npz["logits_mean_plogp"])),
        per_class={int(c): _get_gaussian(npz, f"class{int(c)}_") for c in npz["classes"]},
        label_accuracy=None if np.isnan(accuracy) else accuracy)
  return stats, key


# ------------------------------------------------------------------ the cache
def path_for(cache_dir: str, key: StatsKey) -> str:
  return os.path.join(cache_dir, key.filename())


def load(cache_dir: str, key: StatsKey) -> Optional[metrics.EvalStats]:
  """The cached statistics for `key`, or None (missing, unreadable or other key)."""
  path = path_for(cache_dir, key)
  if not tf.io.gfile.exists(path):
    return None
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      stats, stored_key = from_bytes(f.read())
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("Ignoring unreadable statistics cache %s (%s); recomputing.", path, e)
    return None
  if stored_key != key.as_dict():
    logging.warning("Statistics cache %s holds another key (%s); recomputing.",
                    path, stored_key)
    return None
  return stats


def save(cache_dir: str, key: StatsKey, stats: metrics.EvalStats) -> str:
  """Writes atomically (temporary file, then rename); returns the path."""
  tf.io.gfile.makedirs(cache_dir)
  path = path_for(cache_dir, key)
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "wb") as f:
    f.write(to_bytes(stats, key))
  tf.io.gfile.rename(tmp, path, overwrite=True)
  return path


def load_or_compute(cache_dir: str, key: StatsKey,
                    compute: Callable[[], metrics.EvalStats],
                    store: bool = True) -> metrics.EvalStats:
  """Cached statistics for `key`; computes them on a miss and stores them if `store`."""
  stats = load(cache_dir, key)
  if stats is not None:
    logging.info("Real statistics loaded from %s.", path_for(cache_dir, key))
    return stats
  logging.info("Computing real statistics for %s (cached afterwards).", key)
  stats = compute()
  if store:
    logging.info("Real statistics cached in %s.", save(cache_dir, key, stats))
  return stats
