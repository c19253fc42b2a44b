"""Distributed evaluation: 2 replicas give the statistics of 1 (eval/stream.py ReplicaScorer).

conftest.py splits the CPU into 2 logical devices, so a MirroredStrategy
over both runs in-process beside the default (one-device) strategy.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf import config as config_lib
from sagan_tf.eval import classifiers, run, stream
from sagan_tf import run_dir
from sagan_tf.train import setup


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """A shapes run directory with one (perturbed, untrained) checkpoint at step 5,
  and a fake Inception SavedModel."""
  root = tmp_path_factory.mktemp("dist_eval")
  # eval_batch_size 45 does not divide over 2 replicas (23 + 22 + 1 padding
  # row) and num_samples 120 leaves a partial last batch.
  cfg = config_lib.Config.preset(
      "demo", gf_dim=4, df_dim=4, z_dim=8, g_attention_res=(), d_attention_res=(),
      precision="float32", ema_decay=0.0, model_dir=str(root / "run"), num_samples=120,
      eval_batch_size=45, intra_fid_classes=3, classifier="inception",
      inception_path=classifiers.build_fake_inception_savedmodel(str(root / "inc"), seed=2))
  models = setup.build_gan(cfg)
  rng = np.random.RandomState(0)
  for v in models.generator.trainable_variables:  # images that differ per z and class
    v.assign(v + rng.normal(0, 0.3, v.shape).astype(np.float32))
  run_dir.write_run_config(cfg, cfg.model_dir)
  run_dir.make_manager(run_dir.make_checkpoint(models, tf.Variable(5, dtype=tf.int64)),
                           cfg.model_dir, 1).save(5)
  return cfg


def _relative(a, b):
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _only_tensors(strategy, seen):
  """Wraps strategy.run to record whether every argument leaf is a tensor (TPU rule)."""
  run_fn = strategy.run

  def checked(fn, args=(), kwargs=None):
    leaves = tf.nest.flatten((args, kwargs or {}))
    seen.append(all(isinstance(x, tf.Tensor) for x in leaves))
    return run_fn(fn, args=args, kwargs=kwargs)

  strategy.run = checked
  return strategy


def _evaluate(cfg, strategy, stats_dir):
  cfg = dataclasses.replace(cfg, stats_dir=str(stats_dir))
  evaluator = run.Evaluator(cfg, strategy)  # real statistics computed afresh here
  generator, step = run_dir.restore_generator(cfg, use_ema=False, strategy=strategy)
  return evaluator, evaluator(generator, step), evaluator.statistics(generator, step)


def test_two_replicas_give_the_statistics_of_one(tiny_run, tmp_path):
  seen = []
  two = _only_tensors(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), seen)
  ev1, result1, fake1 = _evaluate(tiny_run, tf.distribute.get_strategy(), tmp_path / "s1")
  ev2, result2, fake2 = _evaluate(tiny_run, two, tmp_path / "s2")
  assert ev2.scorer.replicas == 2 and ev1.scorer.replicas == 1
  assert seen and all(seen)  # strategy.run got only tensors
  for key in ("inception_score", "fid", "intra_fid"):
    assert result1[key] == pytest.approx(result2[key], rel=1e-6), key
  assert result1["num_samples"] == result2["num_samples"] == 120
  assert result1["inception_score"] > 1.0 and result1["fid"] > 0
  for one, two_ in ((fake1, fake2), (ev1.real, ev2.real)):
    assert one.features.count == two_.features.count == 120
    # Per image the outputs agree to float32 rounding (batch shapes differ);
    # the statistics as a whole within 1e-6 relative.
    assert _relative(one.features.mean, two_.features.mean) < 1e-6
    assert _relative(one.features.covariance(), two_.features.covariance()) < 1e-6
    assert _relative(one.logits.mean_p, two_.logits.mean_p) < 1e-6
    assert one.logits.mean_plogp == pytest.approx(two_.logits.mean_plogp, rel=1e-6)
    assert sorted(one.per_class) == sorted(two_.per_class)
    for c in one.per_class:
      assert one.per_class[c].count == two_.per_class[c].count


def test_generated_batches_are_a_function_of_seed_and_index_only():
  z1, l1 = stream.eval_latents(tf.constant(3, tf.int64), tf.constant(1, tf.int64), 6, 4, 10)
  z2, l2 = stream.eval_latents(tf.constant(3, tf.int64), tf.constant(1, tf.int64), 6, 4, 10)
  z3, _ = stream.eval_latents(tf.constant(3, tf.int64), tf.constant(2, tf.int64), 6, 4, 10)
  np.testing.assert_array_equal(z1, z2)
  np.testing.assert_array_equal(l1, l2)
  assert not np.allclose(z1, z3)
  assert l1.dtype == tf.int32 and 0 <= int(tf.reduce_min(l1)) and int(tf.reduce_max(l1)) < 10
