"""The table `./run.sh` prints after the demo: the end of a run beside step 0.

`format_outputs(...)` is the box after it (and after any training run): where
the final sample grid, attention maps, evaluation JSON and TensorBoard events
are. `format_report(end, start)` takes two results of `run.Evaluator` (dicts as
written to MODEL_DIR/eval/step_XXXXXXX.json) and returns text: each metric at
step 0 and at the end, the FCD ratio, the real-vs-real floor, FCD per class
(so that colour or pose collapse inside one class shows) and, for the shapes
classifier, whether the demo's targets are met.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from sagan_tf.data.shapes import CLASS_NAMES

# The demo's measured targets (issue 5): the generated shapes must be
# recognisable as their conditioning class, and the FCD must fall 100-fold.
TARGET_CLASS_CONSISTENCY = 0.75
TARGET_FCD_FRACTION = 1 / 100

_ROWS = (  # (key, label, format); a row shows when the end result has the key
    ("fcd", "FCD (lower is better)", "{:.5g}"),
    ("class_consistency", "class consistency", "{:.3f}"),
    ("classifier_score", "classifier score", "{:.3f}"),
    ("intra_fcd", "intra-class FCD, mean", "{:.4g}"),
    ("inception_score", "Inception Score", "{:.3f}"),
    ("fid", "FID (lower is better)", "{:.5g}"),
    ("intra_fid", "intra-FID", "{:.4g}"),
)


def _cell(result: Optional[Mapping], key: str, fmt: str) -> str:
  value = None if result is None else result.get(key)
  return "-" if value is None else fmt.format(value)


def _short(value: float) -> str:
  """3 significant digits without an exponent: 0.183, 40.2, 1234."""
  return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _class_name(index: str) -> str:
  i = int(index)
  return CLASS_NAMES[i] if 0 <= i < len(CLASS_NAMES) else index


def format_report(end: Mapping, start: Optional[Mapping] = None) -> str:
  """Text table of `end` (and `start`, the step-0 result, when known)."""
  shapes = "fcd" in end
  lines: List[str] = [
      f"Evaluation: {end['num_samples']} generated images, classifier {end['classifier']}, "
      f"dataset {end['dataset']}, seed {end['seed']}."]
  header = f"  {'':26s}{'step 0':>12s}{'step ' + str(end['step']):>12s}"
  lines += [header, "  " + "-" * (len(header) - 2)]
  for key, label, fmt in _ROWS:
    if end.get(key) is not None:
      lines.append(f"  {label:26s}{_cell(start, key, fmt):>12s}{_cell(end, key, fmt):>12s}")
  if shapes:
    lines.append(f"  real-vs-real FCD (the floor at this sample size): "
                 f"{end['real_vs_real_fcd']:.3g}")
    lines.append(f"  classifier accuracy on held-out real shapes: "
                 f"{end['classifier_test_accuracy']:.3f} (chance 0.1)")
  per_class: Dict[str, float] = end.get("intra_fcd_per_class") or end.get(
      "intra_fid_per_class") or {}
  if per_class:
    names = [(_class_name(c) if shapes else c) for c in per_class]
    lines.append("  per class: " + ", ".join(
        f"{n} {_short(v)}" for n, v in zip(names, per_class.values())))
  if shapes:
    lines += _targets(end, start)
  return "\n".join(lines)


def _targets(end: Mapping, start: Optional[Mapping]) -> List[str]:
  consistency = end["class_consistency"]
  lines = [f"  target class consistency >= {TARGET_CLASS_CONSISTENCY}: "
           f"{'met' if consistency >= TARGET_CLASS_CONSISTENCY else 'NOT met'} "
           f"({consistency:.3f})"]
  if start is not None and start.get("fcd"):
    fraction = end["fcd"] / start["fcd"]
    met = fraction <= TARGET_FCD_FRACTION
    lines.append(f"  target FCD <= 1/{round(1 / TARGET_FCD_FRACTION)} of step 0: "
                 f"{'met' if met else 'NOT met'} (1/{1 / fraction:.0f})")
  else:
    lines.append("  target FCD <= 1/100 of step 0: no step-0 result in MODEL_DIR/eval")
  return lines


def format_box(rows: Sequence[Tuple[str, str]], title: str) -> str:
  """[(label, text)] as a framed block: the labels in one column, the texts
  beside them, never cut (paths must stay copyable)."""
  width = max(len(label) for label, _ in rows)
  body = [f"{label.ljust(width)}  {text}" for label, text in rows]
  inner = max(len(title), *(len(line) for line in body))
  rule = "=" * (inner + 4)
  return "\n".join([rule, f"| {title.ljust(inner)} |", rule,
                    *(f"| {line.ljust(inner)} |" for line in body), rule])


def format_outputs(model_dir: str, samples: str, attention: Mapping[str, str],
                   eval_json: Optional[str]) -> str:
  """The box at the end of training: the final sample grid (one row per
  class), the attention maps of the final generator ({layer: grid.png}),
  the final evaluation's JSON (None: not evaluated) and TensorBoard."""
  rows = [("Samples (one row per class)", samples)]
  rows += [(f"Attention maps, {name}", path) for name, path in attention.items()]
  if eval_json:
    rows.append(("Evaluation", eval_json))
  rows.append(("TensorBoard", f"tensorboard --logdir {model_dir}"))
  return format_box(rows, "The final generator's pictures and scores")
