"""A run directory keeps its history: config.json is the first launch's, a
resume with other settings is refused unless --allow_config_change, and then
the settings apply (learning rates included) and are in launches.jsonl."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf import config as config_lib
from sagan_tf import run_dir
from sagan_tf.errors import UserError
from sagan_tf.train import loop

import train_helpers as th


def _trainer(cfg):
  trainer = loop.Trainer(config_lib.merge("train", cfg), tf.distribute.get_strategy())
  assert trainer.run() == 0
  return trainer


def _lr(optimizer) -> float:
  return float(np.asarray(optimizer.learning_rate))


def test_resume_with_other_settings_is_refused_then_allowed_and_logged(tmp_path):
  model_dir = str(tmp_path / "run")
  first = th.tiny_config(model_dir=model_dir, train_steps=2, lr_d=4e-4)
  _trainer(first)
  config_json = open(run_dir.config_path(model_dir), "rb").read()
  assert len(run_dir.read_launches(model_dir)) == 1

  changed = th.tiny_config(model_dir=model_dir, train_steps=4, lr_d=1e-4, batch_size=2)
  with pytest.raises(UserError, match=r"launched with other settings \(lr_d: 0.0004 -> "
                                      r"0.0001; batch_size: 4 -> 2\).*--allow_config_change"):
    loop.train(changed)
  assert run_dir.checkpoint_step(run_dir.latest_checkpoint(model_dir)) == 2  # nothing ran

  trainer = _trainer(dataclasses.replace(changed, allow_config_change=True))
  assert int(trainer.step_var.numpy()) == 4
  # The new rate is the optimiser's after the steps (the checkpoint had 4e-4).
  assert _lr(trainer.models.d_optimizer) == pytest.approx(1e-4, rel=1e-6)
  assert _lr(trainer.models.g_optimizer) == pytest.approx(first.lr_g, rel=1e-6)
  assert open(run_dir.config_path(model_dir), "rb").read() == config_json
  launches = run_dir.read_launches(model_dir)
  assert [e["start_step"] for e in launches] == [0, 2]
  assert "lr_d: 0.0004 -> 0.0001" in launches[1]["changes"]
  assert "train_steps: 2 -> 4" in launches[1]["changes"]
  assert launches[1]["config"]["lr_d"] == 1e-4 and launches[0]["config"]["lr_d"] == 4e-4
  assert run_dir.load_run_config(model_dir).lr_d == 1e-4  # the run's current config

  # The next resume is compared with the last launch: same settings, no flag needed.
  again = th.tiny_config(model_dir=model_dir, train_steps=6, lr_d=1e-4, batch_size=2)
  trainer = _trainer(again)
  assert int(trainer.step_var.numpy()) == 6
  assert _lr(trainer.models.d_optimizer) == pytest.approx(1e-4, rel=1e-6)
  assert [e["start_step"] for e in run_dir.read_launches(model_dir)] == [0, 2, 4]


def test_a_torn_last_line_of_the_launch_log_is_skipped(tmp_path):
  cfg = th.tiny_config(model_dir=str(tmp_path))
  run_dir.append_launch(cfg.model_dir, cfg, 0)
  with open(run_dir.launch_log_path(cfg.model_dir), "a") as f:
    f.write('{"time": "2026-')
  assert len(run_dir.read_launches(cfg.model_dir)) == 1
  assert run_dir.load_run_config(cfg.model_dir) == cfg


@pytest.mark.parametrize("name,value", [("lr_d", float("inf")), ("lr_g", float("nan")),
                                        ("lr_g", 0.0), ("lr_d", -1e-4)])
def test_non_finite_or_non_positive_learning_rates_are_refused(name, value):
  with pytest.raises(config_lib.ConfigError, match=rf"--{name}={value} must be a finite "
                                                    r"number > 0"):
    th.tiny_config(**{name: value})


def test_lr_inf_on_the_command_line_is_refused_before_training(tmp_path):
  result = th.run(th.train_command(*th.flag_args(model_dir=str(tmp_path), lr_d="inf")))
  assert result.returncode == 2, result.stderr[-2000:]
  assert "--lr_d=inf must be a finite number > 0" in result.stderr
  assert not os.path.exists(tmp_path / "config.json")
