"""The paper's ImageNet 128x128 numbers, and a table of a run beside them.

Zhang, Goodfellow, Metaxas, Odena, "Self-Attention Generative Adversarial
Networks" (arXiv 1805.08318): Table 1 (attention at different feature maps,
1M iterations) and Table 2 (against the state of the art). IS = Inception
score on 50,000 samples (higher is better), FID = Fréchet Inception distance
(lower is better), intra-FID = FID within each class, averaged.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class PublishedResult:
  model: str
  source: str
  inception_score: float
  fid: float
  intra_fid: Optional[float] = None


PUBLISHED: Tuple[PublishedResult, ...] = (
    PublishedResult("SAGAN, attention at 64x64 (feat64; preset imagenet128_feat64)",
                    "Table 2 / Table 1", 52.52, 18.65, 83.7),
    PublishedResult("SAGAN, attention at 32x32 (feat32; preset imagenet128, "
                    "the original code)", "Table 1", 51.43, 18.28),
    PublishedResult("SNGAN-projection (best before SAGAN)", "Table 2", 36.8, 27.62, 92.4),
)

PAPER_NUM_SAMPLES = 50_000
PAPER_IMAGE_SIZE = 128
PAPER_NUM_CLASSES = 1000


def _fmt(value, digits: int = 2) -> str:
  if value is None:
    return "-"
  return f"{float(value):.{digits}f}"


def _data_mismatch(dataset: str, image_size: Optional[int],
                   num_classes: Optional[int]) -> str:
  """How the run's data differs from the paper's ("" when it may be ImageNet 128x128).

  A tfrecords or tfds dataset may be ImageNet; its size and class count decide.
  """
  differs = ((image_size is not None and image_size != PAPER_IMAGE_SIZE) or
             (num_classes is not None and num_classes != PAPER_NUM_CLASSES) or
             (dataset and dataset.split(":")[0] not in ("tfrecords", "tfds")) or
             (dataset.startswith("tfds:") and "imagenet" not in dataset.lower()))
  if not differs:
    return ""
  parts = [f"--dataset={dataset or '?'}"]
  if image_size is not None:
    parts.append(f"at {image_size}x{image_size}")
  if num_classes is not None:
    parts.append(f"with {num_classes} classes")
  return " ".join(parts)


def format_comparison(result: Mapping, image_size: Optional[int] = None,
                      num_classes: Optional[int] = None) -> str:
  """A text table of the run's IS / FID / intra-FID beside the paper's.

  With a caveat line ("note: ...") for each reason the numbers differ in
  kind: the sample count, a classifier that is not Inception, and data that
  is not ImageNet 128x128 (the run's `image_size` / `num_classes`, when
  given, and its dataset).

  `result` is an eval result dict (keys `inception_score`, `fid`, optional
  `intra_fid`, `num_samples`, `step`, `dataset`, `classifier`; a shapes run's
  `classifier_score`, `fcd`, `intra_fcd` fill the same columns).
  """
  rows = [("model", "IS", "FID", "intra-FID", "samples")]
  run_name = f"this run, step {result.get('step', '?')}"
  score = result.get("inception_score", result.get("classifier_score"))
  distance = result.get("fid", result.get("fcd"))
  intra = result.get("intra_fid", result.get("intra_fcd"))
  rows.append((run_name, _fmt(score), _fmt(distance), _fmt(intra, 1),
               str(result.get("num_samples", "?"))))
  for p in PUBLISHED:
    rows.append((f"{p.model} [{p.source}]", _fmt(p.inception_score), _fmt(p.fid),
                 _fmt(p.intra_fid, 1), str(PAPER_NUM_SAMPLES)))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                     for i, (cell, w) in enumerate(zip(row, widths)))
           for row in rows]
  lines.insert(1, "  ".join("-" * w for w in widths))
  notes = []
  num_samples = result.get("num_samples")
  if num_samples is not None and int(num_samples) != PAPER_NUM_SAMPLES:
    notes.append(f"The run used {num_samples} samples, the paper {PAPER_NUM_SAMPLES}: "
                 "FID is biased upwards with fewer samples and IS changes too, "
                 "so the numbers are not directly comparable.")
  classifier = result.get("classifier")
  if classifier is not None and not str(classifier).startswith("inception"):
    notes.append(f"The run was scored with the {classifier!r} classifier, not "
                 "Inception: its IS/FID columns are classifier score / FCD.")
  mismatch = _data_mismatch(str(result.get("dataset", "")), image_size, num_classes)
  if mismatch:
    notes.append(f"The run is {mismatch}; the paper's numbers are ImageNet (1000 classes) "
                 f"at {PAPER_IMAGE_SIZE}x{PAPER_IMAGE_SIZE}: the columns are not comparable, "
                 "only shown side by side.")
  if intra is not None:
    notes.append("intra-FID depends strongly on the images per class "
                 f"({result.get('intra_fid_images_per_class', '?')} here).")
  return "\n".join(lines + [f"note: {n}" for n in notes])
