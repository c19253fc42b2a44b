"""The eval mode end to end on a tiny run: checkpoint -> JSON + TensorBoard scalars."""

import dataclasses
import json
import os

import pytest
import tensorflow as tf

from sagan_tf import config as config_lib
from sagan_tf.errors import UserError
from sagan_tf.eval import classifiers, published, run
from sagan_tf import run_dir
from sagan_tf.train import setup


def _tiny_cfg(tmp_path):
  return config_lib.Config.preset(
      "demo", gf_dim=4, df_dim=4, z_dim=8, g_attention_res=(), d_attention_res=(),
      precision="float32", ema_decay=0.0, model_dir=str(tmp_path / "run"),
      num_samples=120, eval_batch_size=50, train_steps=7)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """A run directory with config.json and one checkpoint at step 7 (untrained)."""
  cfg = _tiny_cfg(tmp_path_factory.mktemp("run"))
  models = setup.build_gan(cfg)
  step = tf.Variable(7, dtype=tf.int64)
  run_dir.write_run_config(cfg, cfg.model_dir)
  run_dir.make_manager(run_dir.make_checkpoint(models, step), cfg.model_dir, 2).save(7)
  return cfg


@pytest.fixture(scope="module")
def inception_dir(tmp_path_factory):
  return classifiers.build_fake_inception_savedmodel(
      str(tmp_path_factory.mktemp("inc") / "module"), seed=1)


@pytest.mark.slow
def test_eval_mode_writes_is_fid_json_and_scalars_with_inception(tiny_run, inception_dir,
                                                                 capsys):
  cfg = tiny_run
  cli = dataclasses.replace(config_lib.Config.preset("demo"), model_dir=cfg.model_dir,
                            inception_path=inception_dir, num_samples=120,
                            eval_batch_size=50, intra_fid_classes=2,
                            compare_published=True)
  assert run.evaluate(cli) == 0
  (path,) = tf.io.gfile.glob(os.path.join(cfg.model_dir, "eval",
                                         "step_0000007.is_fid+intra2-inception_*-n120.json"))
  with open(path) as f:
    result = json.load(f)
  for key in ("inception_score", "fid", "intra_fid", "step", "num_samples", "classifier",
              "dataset", "seed", "wall_time_s"):
    assert key in result, key
  assert result["step"] == 7 and result["num_samples"] == 120
  assert result["classifier"].startswith("inception_")
  assert result["inception_score"] >= 1.0 and result["fid"] > 0
  assert sorted(result["intra_fid_per_class"]) == ["0", "5"]
  events = tf.io.gfile.glob(os.path.join(cfg.model_dir, "eval", "events.out.tfevents.*"))
  assert events
  tags = {v.tag for e in tf.compat.v1.train.summary_iterator(events[0])
          for v in e.summary.value}
  suffix = f"{result['classifier']}-n120"
  assert {f"eval/fid/{suffix}", f"eval/inception_score/{suffix}",
          f"eval/intra_fid_per_class/{suffix}/class_5"} <= tags
  out = capsys.readouterr().out
  assert "52.52" in out and "18.65" in out and "this run, step 7" in out
  # Real statistics were cached: a second eval does not recompute them.
  assert tf.io.gfile.glob(os.path.join(cfg.model_dir, "eval", "real_*.npz"))


@pytest.mark.slow
def test_shapes_run_reports_fcd_consistency_and_real_floor(tiny_run):
  cfg = tiny_run
  # A classifier already in the cache (untrained here; the real one is trained
  # on first use): the eval must load it, not train.
  classifiers.shapes_classifier(os.path.join(cfg.model_dir, "eval"), image_size=32,
                                seed=cfg.seed, train_images=10, test_images=100,
                                max_epochs=0)
  result = run.evaluate_generator(cfg, run_dir.restore_generator(cfg)[0], 7)
  for key in ("fcd", "classifier_score", "class_consistency", "real_vs_real_fcd",
              "intra_fcd_per_class", "classifier_test_accuracy", "step", "num_samples",
              "wall_time_s"):
    assert key in result, key
  assert "fid" not in result and "inception_score" not in result
  assert sorted(result["intra_fcd_per_class"]) == [str(c) for c in range(10)]
  assert 0.0 <= result["class_consistency"] <= 1.0
  assert result["real_vs_real_fcd"] < result["fcd"]  # an untrained G is far from real


def _tags(model_dir):
  return {v.tag for path in tf.io.gfile.glob(os.path.join(model_dir, "eval", "events.*"))
          for e in tf.compat.v1.train.summary_iterator(path) for v in e.summary.value}


def test_evaluations_of_two_kinds_at_one_step_are_both_kept(tiny_run, inception_dir):
  cfg = tiny_run
  classifiers.shapes_classifier(os.path.join(cfg.model_dir, "eval"), image_size=32,
                                seed=cfg.seed, train_images=10, test_images=100,
                                max_epochs=0)
  generator = run_dir.restore_generator(cfg)[0]
  shapes = run.evaluate_generator(cfg, generator, 7)
  fake_inception = dataclasses.replace(cfg, inception_path=inception_dir, num_samples=60)
  inception = run.evaluate_generator(fake_inception, generator, 7)
  assert shapes["kind"].startswith("fcd+intra10-shapes32_") and shapes["kind"].endswith("-n120")
  assert inception["kind"].startswith("is_fid-inception_") and inception["kind"].endswith("-n60")
  kept = {}
  for path in run_dir.eval_result_paths(cfg.model_dir, 7):
    with open(path) as f:
      result = json.load(f)
    kept[result["kind"]] = result
  assert kept[shapes["kind"]]["fcd"] == shapes["fcd"]  # not replaced by the later eval
  assert kept[inception["kind"]]["fid"] == inception["fid"]
  assert run.read_result(cfg, 7, kind=shapes["kind"])["fcd"] == shapes["fcd"]
  assert run.read_result(cfg, 7)["kind"] == inception["kind"]  # no kind: the newest
  tags = _tags(cfg.model_dir)
  assert f"eval/fcd/{shapes['classifier']}-n120" in tags
  assert f"eval/fid/{inception['classifier']}-n60" in tags


def test_eval_without_inception_path_on_non_shapes_data_says_what_to_download(tmp_path):
  cfg = dataclasses.replace(_tiny_cfg(tmp_path), dataset="tfrecords:/nowhere/*.tfrecords")
  with pytest.raises(UserError, match="inception_path"):
    run.choose_classifier(cfg)


def test_format_comparison_shows_the_run_beside_the_paper():
  table = published.format_comparison({"inception_score": 30.0, "fid": 25.5,
                                       "num_samples": 10000, "step": 1234})
  assert "30.00" in table and "25.50" in table and "step 1234" in table
  for number in ("52.52", "18.65", "83.7", "51.43", "18.28", "36.80", "27.62", "92.4"):
    assert number in table
  assert "10000 samples" in table  # the sample-size caveat


def test_eval_config_takes_the_typed_eval_flags_over_the_run_config(tiny_run):
  # --num_samples=10000 typed (the demo preset's own default) overrides the
  # run's 120; eval_batch_size was not typed, so the run's 50 stays.
  cli = dataclasses.replace(config_lib.Config.preset("demo"), model_dir=tiny_run.model_dir,
                            num_samples=10_000, eval_batch_size=7)
  cfg = run.eval_config(cli, typed={"model_dir", "num_samples"})
  assert (cfg.num_samples, cfg.eval_batch_size, cfg.gf_dim) == (10_000, 50, 4)
