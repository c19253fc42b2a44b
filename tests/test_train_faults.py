"""Faults (issue 18): divergence never leaves a non-finite checkpoint, resume never
starts over, corrupt checkpoint files are named, small files are written atomically."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf import atomic_write
from sagan_tf import run_dir
from sagan_tf.errors import UserError
from sagan_tf.train import finite, loop, setup
from sagan_tf.train import step as step_lib

import train_helpers as th

STEPS = dict(train_steps=4, checkpoint_every_steps=1, keep_checkpoints=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 4-step run: ckpt-2, ckpt-3, ckpt-4 (the fixture is copied per test)."""
  model_dir = str(tmp_path_factory.mktemp("trained") / "run")
  assert loop.train(th.tiny_config(model_dir=model_dir, **STEPS)) == 0
  return model_dir


@pytest.fixture
def run(trained, tmp_path, caplog):
  caplog.set_level("INFO")
  model_dir = str(tmp_path / "run")
  shutil.copytree(trained, model_dir)
  # The state file holds absolute paths of the fixture: point it at the copy.
  ckpts = run_dir.checkpoint_dir(model_dir)
  tf.compat.v1.train.update_checkpoint_state(
      ckpts, os.path.join(ckpts, "ckpt-4"),
      all_model_checkpoint_paths=[os.path.join(ckpts, f"ckpt-{n}") for n in (2, 3, 4)])
  return model_dir


def _ckpt(model_dir, n):
  return os.path.join(run_dir.checkpoint_dir(model_dir), f"ckpt-{n}")


def _numbers(model_dir):
  return [n for n, _ in run_dir.list_checkpoints(run_dir.checkpoint_dir(model_dir))
          if tf.io.gfile.exists(_ckpt(model_dir, n) + ".index")]


# --------------------------------------------------------------- divergence
def test_train_function_flags_a_non_finite_state_even_with_finite_losses():
  cfg = th.tiny_config(model_dir="")
  models = setup.build_gan(cfg)
  step_var = tf.Variable(0, dtype=tf.int64)
  strategy = tf.distribute.get_strategy()
  data = tf.data.Dataset.from_tensors(
      (tf.zeros([4, 32, 32, 3]), tf.zeros([4], tf.int32))).repeat()
  train_fn = step_lib.make_train_function(strategy, models, cfg, step_var)
  out = train_fn(iter(data))
  assert bool(out["finite"])
  # A moving statistic is not used by the training forward pass: the losses
  # stay finite, the state does not.
  mean = models.generator.tf1_variable_map()["model/g_block1/cbn_0/mean"]
  mean.assign(tf.fill(mean.shape, np.nan))
  out = train_fn(iter(data))
  assert np.isfinite(float(out["d_loss"])) and np.isfinite(float(out["g_loss"]))
  assert not bool(out["finite"])
  assert not bool(finite.all_finite(finite.state_variables(models)))
  assert bool(finite.all_finite([tf.Variable([1.0, 2.0])]))
  # An Adam slot alone.
  mean.assign(tf.zeros(mean.shape))
  slot = models.d_optimizer._velocities[0]  # pylint: disable=protected-access
  slot.assign(tf.fill(slot.shape, np.inf))
  assert not bool(finite.all_finite(finite.state_variables(models)))


def test_adam_epsilon_zero_stops_the_run_and_leaves_no_non_finite_checkpoint(tmp_path):
  model_dir = str(tmp_path / "run")
  result = th.run(th.train_command(*th.flag_args(model_dir=model_dir, adam_epsilon=0.0,
                                                 **STEPS)))
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Non-finite loss or weights at step" in result.stderr
  for _, path in run_dir.list_checkpoints(run_dir.checkpoint_dir(model_dir)):
    assert run_dir.checkpoint_problem(path) is None, path


def test_divergence_names_the_newest_finite_checkpoint_and_a_rerun_resumes(run):
  # ckpt-4 of an older version holds NaNs: the message names ckpt-3 and a
  # re-run with the advice resumes from it.
  _write_non_finite(run, 4)
  trainer = loop.Trainer(th.tiny_config(model_dir=run, **STEPS), tf.distribute.get_strategy())
  trainer.chief = True
  with pytest.raises(loop.NonFiniteLossError, match="newest finite checkpoint is .*ckpt-3,"):
    trainer._stop_non_finite(4, 5, {"d_loss": 1.0, "g_loss": 2.0})  # pylint: disable=protected-access
  assert run_dir.resume_point(run).path == _ckpt(run, 3)


def _write_non_finite(model_dir, n):
  cfg = th.tiny_config(model_dir=model_dir)
  models = setup.build_gan(cfg)
  ckpt = run_dir.make_checkpoint(models, tf.Variable(n, dtype=tf.int64))
  ckpt.restore(_ckpt(model_dir, n)).expect_partial()
  w = models.generator.tf1_variable_map()["model/g_snh0/Matrix"]
  w.assign(tf.fill(w.shape, np.nan))
  ckpt.write(_ckpt(model_dir, n))


def test_eval_and_export_refuse_a_non_finite_generator(run):
  _write_non_finite(run, 4)
  cfg = th.tiny_config(model_dir=run)
  with pytest.raises(UserError, match=r"generator weights of .*ckpt-4 are not finite .*"
                                      r"model/g_snh0/Matrix.*--checkpoint="):
    run_dir.restore_generator(cfg)
  _, step = run_dir.restore_generator(cfg, checkpoint_path=_ckpt(run, 3))
  assert step == 3


# -------------------------------------------------------------------- resume
def test_missing_latest_index_resumes_from_the_previous_and_keeps_older(run, caplog):
  os.remove(_ckpt(run, 4) + ".index")
  assert loop.train(th.tiny_config(model_dir=run, **dict(STEPS, train_steps=6))) == 0
  text = caplog.text
  assert "Skipping the checkpoint" in text and "ckpt-4.index is missing" in text
  assert f"Resuming from {_ckpt(run, 3)} at step 3" in text
  assert "starting at step 0" not in text
  # ckpt-2 (older than the one resumed from) survives the rotation.
  assert {2, 4, 5, 6} <= set(_numbers(run))
  assert run_dir.latest_checkpoint(run) == _ckpt(run, 6)


def test_missing_state_file_resumes_from_the_newest_file_and_keeps_older(run, caplog):
  os.remove(os.path.join(run_dir.checkpoint_dir(run), "checkpoint"))
  assert loop.train(th.tiny_config(model_dir=run, **dict(STEPS, train_steps=6))) == 0
  assert f"Resuming from {_ckpt(run, 4)} at step 4" in caplog.text
  assert _numbers(run) == [2, 3, 4, 5, 6]


def test_checkpoint_flag_resumes_training_from_that_checkpoint(run, caplog):
  assert loop.train(th.tiny_config(model_dir=run, checkpoint=_ckpt(run, 2),
                                   **dict(STEPS, train_steps=3))) == 0
  assert f"Resuming from {_ckpt(run, 2)} at step 2" in caplog.text
  assert run_dir.checkpoint_step(run_dir.latest_checkpoint(run)) == 3


def test_no_usable_checkpoint_is_refused_listing_them(run):
  for n in (2, 3, 4):
    os.remove(_ckpt(run, n) + ".index")
  with pytest.raises(UserError, match=r"No usable checkpoint in .*ckpt-4: .*ckpt-3: .*"
                                      r"ckpt-2: .*does not start over"):
    loop.train(th.tiny_config(model_dir=run, **STEPS))


# ------------------------------------------------------------ corrupt files
def _data(model_dir, n):
  return _ckpt(model_dir, n) + ".data-00000-of-00001"


def test_truncated_data_is_named_and_the_intact_checkpoint_used(run, caplog):
  with open(_data(run, 4), "r+b") as f:
    f.truncate(os.path.getsize(_data(run, 4)) // 2)
  with pytest.raises(UserError, match=r"Cannot restore the checkpoint .*ckpt-4: "
                                      r".*ckpt-4.data-00000-of-00001 is missing, truncated "
                                      r"or corrupt.*newest intact checkpoint is .*ckpt-3"):
    run_dir.restore_generator(th.tiny_config(model_dir=run))
  assert loop.train(th.tiny_config(model_dir=run, **STEPS)) == 0
  assert "ckpt-4.data-00000-of-00001 is missing, truncated or corrupt" in caplog.text
  assert f"Resuming from {_ckpt(run, 3)} at step 3" in caplog.text


def test_corrupt_data_bytes_and_deleted_data_are_named(run):
  with open(_data(run, 4), "r+b") as f:
    f.seek(8)
    f.write(b"\xff" * 64)  # same length: a checksum mismatch
  assert "ckpt-4.data-00000-of-00001 is missing, truncated or corrupt" in (
      run_dir.checkpoint_problem(_ckpt(run, 4)))
  os.remove(_data(run, 3))
  assert "ckpt-3.data-" in run_dir.checkpoint_problem(_ckpt(run, 3))
  assert run_dir.resume_point(run).path == _ckpt(run, 2)


def test_garbage_state_file_is_named_and_training_resumes(run, caplog):
  with open(os.path.join(run_dir.checkpoint_dir(run), "checkpoint"), "wb") as f:
    f.write(b"\xff\xfe\x00garbage\x80")
  with pytest.raises(UserError, match=r"state file .*checkpoint is corrupt.*"
                                      r"--checkpoint=.*ckpt-4 \(the newest intact one\)"):
    run_dir.latest_checkpoint(run)
  assert loop.train(th.tiny_config(model_dir=run, **dict(STEPS, train_steps=5))) == 0
  assert f"Resuming from {_ckpt(run, 4)} at step 4" in caplog.text
  assert run_dir.latest_checkpoint(run) == _ckpt(run, 5)


# ------------------------------------------------------------- small files
def test_config_json_is_written_atomically(tmp_path, monkeypatch):
  model_dir = str(tmp_path)
  cfg = th.tiny_config(model_dir=model_dir)
  path = run_dir.write_run_config(cfg, model_dir)
  before = open(path).read()
  assert json.loads(before) == json.loads(json.dumps(run_dir.config_lib.to_dict(cfg)))

  def killed(*_):
    raise KeyboardInterrupt  # a kill between the temporary file and the rename

  monkeypatch.setattr(atomic_write.os, "replace", killed)
  with pytest.raises(KeyboardInterrupt):
    run_dir.write_run_config(th.tiny_config(model_dir=model_dir, lr_g=1e-5), model_dir)
  assert open(path).read() == before
  assert os.listdir(model_dir) == ["config.json"]


def test_model_dir_that_is_a_file_and_config_json_list_are_named(tmp_path):
  afile = tmp_path / "afile"
  afile.write_text("x")
  with pytest.raises(UserError, match="is a file, not a directory"):
    loop.train(th.tiny_config(model_dir=str(afile)))
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "config.json").write_text("[1, 2]")
  with pytest.raises(UserError, match="holds a JSON list, not a config object"):
    run_dir.load_run_config(str(tmp_path / "run"))


def test_export_takes_the_newer_checkpoint_when_training_rotates_the_resolved_one_away(
    run, monkeypatch, caplog):
  # Between export resolving ckpt-4 and pinning it, a training run beside it
  # saves ckpt-5 and rotates ckpt-4 away.
  cfg = th.tiny_config(model_dir=run)
  real_resolve = run_dir.resolve_checkpoint
  calls = []

  def rotating_resolve(model_dir, checkpoint_path=None):
    path = real_resolve(model_dir, checkpoint_path)
    if not calls:
      calls.append(path)
      models = setup.build_gan(cfg)
      manager = run_dir.make_manager(
          run_dir.make_checkpoint(models, tf.Variable(5, dtype=tf.int64)), run, 1)
      manager.save(checkpoint_number=5)
      for name in tf.io.gfile.glob(_ckpt(run, 4) + ".*"):  # what its rotation does
        tf.io.gfile.remove(name)
    return path

  monkeypatch.setattr(run_dir, "resolve_checkpoint", rotating_resolve)
  _, _, step, source = run_dir.restore_for_mode(cfg, "export")
  assert calls == [_ckpt(run, 4)] and not tf.io.gfile.exists(_ckpt(run, 4) + ".index")
  assert step == 5 and source["checkpoint"] == _ckpt(run, 5)
  assert "ckpt-4 was deleted while reading it" in caplog.text


def test_a_pinned_checkpoint_outlives_its_rotation(run):
  # Once pinned, the training run may delete the files: reading goes on.
  cfg = th.tiny_config(model_dir=run)
  with run_dir.pinned_checkpoint(_ckpt(run, 4)) as pinned:
    assert pinned != _ckpt(run, 4)
    for name in tf.io.gfile.glob(_ckpt(run, 4) + ".*"):
      tf.io.gfile.remove(name)
    _, step = run_dir.restore_generator(cfg, pinned)
  assert step == 4
  assert not [n for n in os.listdir(run_dir.checkpoint_dir(run)) if n.startswith(".pinned")]
  with pytest.raises(FileNotFoundError):  # rotated away before it was pinned
    with run_dir.pinned_checkpoint(_ckpt(run, 4)):
      pass
