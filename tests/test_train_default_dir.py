"""Without --model_dir, training writes to a directory of its preset and dataset:
a run on the user's data never resumes or rewrites the demo's runs/demo."""

import os
import subprocess

from sagan_tf import config as config_lib
from sagan_tf import run_dir

import data_fixtures
import train_helpers as th


def _train_dir(preset, typed=(), **fields):
  return config_lib.merge("train", config_lib.Config.preset(preset, **fields),
                          {"preset", *typed, *fields}).model_dir


def test_default_model_dir_is_derived_from_preset_and_dataset():
  assert _train_dir("demo") == "runs/demo"  # the demo on its own data keeps its folder
  assert _train_dir("demo", dataset="tfrecords:/d/mydata/train-*.tfrecords") == \
      "runs/demo-mydata"
  assert _train_dir("demo", dataset="tfrecords:out/shards/") == "runs/demo-shards"
  assert _train_dir("demo", dataset="tfrecords:one.tfrecords") == "runs/demo-one"
  assert _train_dir("imagenet128", dataset="tfds:imagenet2012:train") == \
      "runs/imagenet128-imagenet2012"
  assert _train_dir("imagenet128") == "runs/imagenet128-data"  # data/train-*.tfrecords
  assert _train_dir("imagenet128", dataset="shapes") == "runs/imagenet128-shapes"
  assert _train_dir("demo", dataset="tfrecords:x", model_dir="mine") == "mine"  # typed
  # Only train derives it; eval reads the run named by --model_dir (or the preset's).
  cfg = config_lib.Config.preset("demo", dataset="tfrecords:x")
  assert config_lib.merge("eval", cfg, {"dataset"}, stored=cfg).model_dir == "runs/demo"


def test_train_on_records_without_model_dir_leaves_runs_demo_alone(tmp_path):
  demo_dir = tmp_path / "runs" / "demo"
  run_dir.write_run_config(config_lib.Config.preset("demo"), str(demo_dir))
  demo_config = (demo_dir / "config.json").read_bytes()
  data_fixtures.write_id_shards(str(tmp_path / "mydata"), num_shards=1, per_shard=16,
                                num_classes=3)
  args = ["--preset=demo" if a.startswith("--preset=") else a
          for a in th.flag_args(dataset="tfrecords:mydata/train-*.tfrecords",
                                self_eval=False)]
  result = subprocess.run(th.train_command(*args), cwd=tmp_path, env=th.env(),
                          capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(os.listdir(demo_dir)) == ["config.json"]
  assert (demo_dir / "config.json").read_bytes() == demo_config
  new_dir = tmp_path / "runs" / "demo-mydata"
  assert run_dir.load_run_config(str(new_dir)).dataset == "tfrecords:mydata/train-*.tfrecords"
  assert run_dir.latest_checkpoint(str(new_dir)).endswith("ckpt-2")
  assert "No --model_dir: the run directory is runs/demo-mydata" in result.stderr
