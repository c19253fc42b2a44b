"""`./run.sh eval --model_dir=DIR`: IS / FID (or the shapes metrics) of a run.

Like the original's eval_imagenet.py: num_samples generated images (generator
in inference mode, z ~ N(0, 1), labels uniform, batches of eval_batch_size)
and num_samples real images go through the feature network; IS from its
logits, FID from its features. Unlike it, both sides are streamed into
running statistics, and the real side is cached (stats_cache).

Feature network (`--classifier`): `auto` = Inception when --inception_path is
given or the data is not `shapes`, else the shapes classifier; `inception`;
`shapes`. With the shapes classifier the run reports the Fréchet classifier
distance (FCD), classifier score, class consistency (fraction of generated
images classified as their conditioning label), the real-vs-real FCD of two
disjoint real sets (the floor a perfect generator would reach at this sample
size) and FCD per class.

Generation and the feature network run over the replicas of the run's
strategy (strategy.py: TPU, TF_CONFIG workers, GPUs or --num_cpu_devices):
each replica generates and scores its slice of every batch
(stream.ReplicaScorer); z and labels are a stateless function of --seed and
the batch index, so the statistics are the same on any number of replicas.
Under MultiWorkerMirroredStrategy every worker takes part; the chief writes.

Writes MODEL_DIR/eval/step_XXXXXXX.KIND.json and TensorBoard scalars
eval/<metric>/<classifier>-n<samples> under MODEL_DIR/eval, KIND naming the
metric set, the classifier (its name carries a fingerprint of the Inception
module or of the shapes classifier's weights) and the sample count
(result_kind): evaluations of different kinds at one step are all kept.
`--watch` evaluates each new checkpoint as training writes it (the
original's continuous evaluation) until the run's last step.
"""

from __future__ import annotations

import json
import time
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from sagan_tf import atomic_write
from sagan_tf import config as config_lib
from sagan_tf import data
from sagan_tf import run_dir
from sagan_tf.strategy import make_strategy, worker_info
from sagan_tf.errors import UserError
from sagan_tf.eval import classifiers, metrics, published, stats_cache, stream

# ------------------------------------------------------------------- config
def eval_config(cli_cfg: config_lib.Config, typed=None) -> config_lib.Config:
  """The run's config.json with what the user typed on top (config.merge)."""
  return run_dir.run_config("eval", cli_cfg, typed)


def stats_dir(cfg) -> str:
  return cfg.stats_dir or run_dir.eval_dir(cfg.model_dir)


def _is_shapes(cfg) -> bool:
  return data.parse_dataset_spec(cfg.dataset).kind == "shapes"


def choose_classifier(cfg, strategy=None, save: bool = True) -> classifiers.Classifier:
  """Inception or the shapes classifier, as --classifier / --inception_path say.

  strategy: its variables are created under strategy.scope() (replicated);
  save: whether a freshly trained shapes classifier is cached (the chief).
  """
  use_shapes = (cfg.classifier == "shapes" or
                (cfg.classifier == "auto" and _is_shapes(cfg) and not cfg.inception_path))
  if not use_shapes:
    return classifiers.load_inception(cfg.inception_path, strategy=strategy)
  if not _is_shapes(cfg):
    raise UserError(f"--classifier=shapes scores the shapes dataset only, but the run's "
                    f"data is --dataset={cfg.dataset}; use --classifier=inception with "
                    "--inception_path=DIR.")
  return classifiers.shapes_classifier(stats_dir(cfg), image_size=cfg.image_size,
                                       seed=cfg.seed, strategy=strategy, save=save)


def _intra(cfg, classifier) -> Tuple[int, ...]:
  if classifier.name.startswith("shapes") and not cfg.intra_fid_classes:
    return tuple(range(cfg.num_classes))  # cheap at 10 classes: always reported
  return metrics.intra_classes(cfg.num_classes, cfg.intra_fid_classes)


# -------------------------------------------------------------------- real
def _real_batches(cfg, num_images: int, part: int) -> Iterator:
  dataset = data.real_images_for_eval(cfg, num_images, part=part)
  try:
    for images, labels in dataset:
      yield images, labels.numpy()
  except (tf.errors.OpError, ValueError) as e:
    user_error = data.translate_data_error(e)
    if user_error is not None:
      raise user_error from e
    raise


def real_stats(cfg, scorer, intra: Tuple[int, ...], part: int = 0,
               save: bool = True) -> metrics.EvalStats:
  """Statistics of real set `part` (0, 1, ... disjoint), cached in stats_dir.

  scorer: a Classifier or a stream.ReplicaScorer; save: write the cache on a miss.
  """
  classifier = getattr(scorer, "classifier", scorer)
  key = stats_cache.StatsKey(
      dataset=cfg.dataset, image_size=cfg.image_size, classifier=classifier.name,
      num_samples=cfg.num_samples, split=cfg.eval_split, intra_classes=intra,
      part=part, data_seed=cfg.seed if _is_shapes(cfg) else -1)
  return stats_cache.load_or_compute(
      stats_dir(cfg), key,
      lambda: stream.accumulate(scorer, _real_batches(cfg, cfg.num_samples, part),
                                cfg.num_samples, intra, what=f"real images (set {part})",
                                log_every_secs=cfg.log_every_secs),
      store=save)


# --------------------------------------------------------------- generated
def generated_outputs(cfg, scorer: stream.ReplicaScorer, generator, seed: int) -> Iterator:
  """(classifier outputs, labels [B]) of ceil(num_samples / eval_batch_size) batches.

  Batch k: z ~ N(0, 1) and labels uniform over the classes from
  stream.eval_latents(seed, k) (every checkpoint is scored on the same z and
  labels, on any number of replicas); the generator in inference mode.
  """
  for index in range(-(-cfg.num_samples // cfg.eval_batch_size)):
    yield scorer.generate_and_classify(generator, seed, index, cfg.z_dim, cfg.num_classes)


# ---------------------------------------------------------------- one step
class Evaluator:
  """Holds the feature network and real statistics across checkpoints.

  strategy: the replicas generation and scoring run on (default: the current
  strategy, one device). Build it, and the generators it scores (their
  variables), under that strategy.
  """

  def __init__(self, cfg, strategy=None):
    self.cfg = cfg
    self.strategy = strategy or tf.distribute.get_strategy()
    self.chief = worker_info(self.strategy)[2]  # writes caches and results
    self.classifier = choose_classifier(cfg, self.strategy, save=self.chief)
    self.scorer = stream.ReplicaScorer(self.strategy, self.classifier, cfg.eval_batch_size)
    self.shapes = self.classifier.name.startswith("shapes")
    self.intra = _intra(cfg, self.classifier)
    self.real = real_stats(cfg, self.scorer, self.intra, part=0, save=self.chief)
    self.real_floor = None
    if self.shapes:
      second = real_stats(cfg, self.scorer, (), part=1, save=self.chief)
      self.real_floor = metrics.frechet_distance(self.real.features, second.features)

  def statistics(self, generator, step: int) -> metrics.EvalStats:
    """EvalStats of cfg.num_samples generated images (seed cfg.seed)."""
    cfg = self.cfg
    return stream.accumulate_outputs(
        generated_outputs(cfg, self.scorer, generator, cfg.seed),
        self.classifier.feature_dim, self.classifier.num_classes, cfg.num_samples,
        self.intra, what=f"generated images (step {step})",
        log_every_secs=cfg.log_every_secs)

  def __call__(self, generator, step: int) -> Dict:
    cfg, start = self.cfg, time.time()
    fake = self.statistics(generator, step)
    distance = metrics.frechet_distance(fake.features, self.real.features)
    score = fake.logits.score()
    result = {"step": int(step), "num_samples": fake.features.count,
              "classifier": self.classifier.name, "dataset": cfg.dataset,
              "seed": cfg.seed}
    intra_mean, intra_per = (None, {})
    if self.intra:
      intra_mean, intra_per = metrics.intra_frechet_distance(fake.per_class,
                                                             self.real.per_class)
      result["intra_fid_images_per_class"] = round(
          float(np.mean([fake.per_class[c].count for c in intra_per])), 1)
    if self.shapes:
      result.update({
          "fcd": distance, "classifier_score": score,
          "class_consistency": fake.label_accuracy,
          "real_vs_real_fcd": self.real_floor,
          "real_classifier_score": self.real.logits.score(),
          "real_label_accuracy": self.real.label_accuracy,
          "classifier_test_accuracy": self.classifier.test_accuracy,
          "intra_fcd": intra_mean,
          "intra_fcd_per_class": {str(c): v for c, v in intra_per.items()}})
    else:
      result.update({"inception_score": score, "fid": distance})
      if intra_mean is not None:
        result["intra_fid"] = intra_mean
        result["intra_fid_per_class"] = {str(c): v for c, v in intra_per.items()}
    elapsed = time.time() - start
    result["wall_time_s"] = round(elapsed, 2)
    result["images_per_s"] = round(fake.features.count / max(elapsed, 1e-9), 1)
    return result


def result_kind(result: Dict) -> str:
  """What makes two results comparable: metric set, classifier, sample count.

  e.g. "fcd-shapes32_s0_1a2b3c4d-n10000" or "is_fid+intra2-inception_9f8e-n500".
  """
  metric_set = "fcd" if "fcd" in result else "is_fid"
  per_class = result.get("intra_fcd_per_class") or result.get("intra_fid_per_class") or {}
  if per_class:
    metric_set += f"+intra{len(per_class)}"
  kind = f"{metric_set}-{result['classifier']}-n{int(result['num_samples'])}"
  return "".join(c if c.isalnum() or c in "+-_" else "_" for c in kind)


def _tag_suffix(result: Dict) -> str:
  return f"{result['classifier']}-n{int(result['num_samples'])}"


def write_result(cfg, result: Dict) -> str:
  """MODEL_DIR/eval/step_XXXXXXX.KIND.json (result["kind"] = result_kind) and
  TensorBoard scalars eval/<metric>/<classifier>-n<samples>, per-class scores
  included; returns the JSON path."""
  directory = run_dir.eval_dir(cfg.model_dir)
  tf.io.gfile.makedirs(directory)
  result = dict(result, kind=result_kind(result))
  path = run_dir.eval_result_path(cfg.model_dir, result["step"], result["kind"])
  atomic_write.write_json(path, result, indent=1)  # a kill leaves the old file or none
  writer = tf.summary.create_file_writer(directory)
  suffix = _tag_suffix(result)
  with writer.as_default():
    for name, value in result.items():
      if name not in ("step", "seed", "num_samples") and isinstance(value, float):
        tf.summary.scalar(f"eval/{name}/{suffix}", value, step=int(result["step"]))
      elif name.endswith("_per_class") and isinstance(value, dict):
        for c, v in value.items():
          tf.summary.scalar(f"eval/{name}/{suffix}/class_{c}", v, step=int(result["step"]))
  writer.flush()
  writer.close()
  return path


def read_result(cfg, step: int, kind: Optional[str] = None) -> Optional[Dict]:
  """A result write_result wrote for `step`, or None when there is none.

  kind: result_kind of the one wanted; None = the only result at that step,
  or the newest written when there are several kinds.
  """
  if kind:
    paths = [run_dir.eval_result_path(cfg.model_dir, step, kind)]
    paths = [p for p in paths if tf.io.gfile.exists(p)]
  else:
    paths = sorted(run_dir.eval_result_paths(cfg.model_dir, step),
                   key=lambda p: tf.io.gfile.stat(p).mtime_nsec)
  if not paths:
    return None
  with tf.io.gfile.GFile(paths[-1]) as f:
    return json.load(f)


def evaluate_generator(cfg, generator, step: int, evaluator: Optional[Evaluator] = None
                       ) -> Dict:
  """Scores one generator (e.g. at the end of training); writes and returns the result.

  Args:
    cfg: the run's Config (model_dir, dataset, eval fields).
    generator: called as generator(z, labels, training=False, update_u=False).
    step: the training step it was taken at.
    evaluator: reused across calls; its strategy's replicas do the work
      (every worker calls this; the chief writes).
  """
  evaluator = evaluator or Evaluator(cfg)
  result = evaluator(generator, step)
  result["kind"] = result_kind(result)
  if evaluator.chief:
    path = write_result(cfg, result)
    logging.info("Eval at step %d written to %s: %s", step, path, _summary(result))
  return result


def _summary(result: Dict) -> str:
  keys = ("fcd", "classifier_score", "class_consistency", "real_vs_real_fcd", "intra_fcd",
          "inception_score", "fid", "intra_fid", "images_per_s")
  return ", ".join(f"{k} {result[k]:.4g}" for k in keys
                   if isinstance(result.get(k), (int, float)))


# -------------------------------------------------------------------- mode
def _checkpoints_to_evaluate(cfg) -> Iterator[str]:
  if not cfg.watch:
    yield run_dir.resolve_checkpoint(cfg.model_dir, cfg.checkpoint or None)
    return
  logging.info("Watching %s for new checkpoints (until step %d).",
               run_dir.checkpoint_dir(cfg.model_dir), cfg.train_steps)
  for path in tf.train.checkpoints_iterator(run_dir.checkpoint_dir(cfg.model_dir),
                                            min_interval_secs=10):
    yield path


def evaluate(cli_cfg, typed=None) -> int:
  """The eval mode: latest (or --checkpoint) checkpoint, or each new one with --watch.

  typed: the fields the user typed (see config.merge).
  """
  cfg = eval_config(cli_cfg, typed)
  # The eval batch is split over the replicas (padded when it does not
  # divide); the training batch does not matter here.
  strategy = make_strategy(cfg, check_batch=False)
  evaluator = Evaluator(cfg, strategy)
  for path in _checkpoints_to_evaluate(cfg):
    generator, step = run_dir.restore_generator(cfg, path, use_ema=cfg.use_ema,
                                                strategy=strategy)
    result = evaluate_generator(cfg, generator, step, evaluator)
    if evaluator.chief:
      print(f"eval step {step}: {_summary(result)}", flush=True)
      if cfg.compare_published:
        print(published.format_comparison(result, cfg.image_size, cfg.num_classes),
              flush=True)
    if cfg.watch and step >= cfg.train_steps:
      logging.info("Reached the run's last step %d; done watching.", cfg.train_steps)
      break
  return 0
