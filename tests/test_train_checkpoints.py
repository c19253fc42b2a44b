"""The run directory: what a checkpoint holds, restoring a generator, clear errors."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf.errors import UserError
from sagan_tf import run_dir
from sagan_tf.train import setup

import train_helpers as th


def _saved_run(model_dir, step=7, **overrides):
  cfg = th.tiny_config(model_dir=model_dir, **overrides)
  models = setup.build_gan(cfg)
  step_var = tf.Variable(step, dtype=tf.int64)
  manager = run_dir.make_manager(run_dir.make_checkpoint(models, step_var), model_dir, 2)
  run_dir.write_run_config(cfg, model_dir)
  path = manager.save(checkpoint_number=step)
  return cfg, models, path


def test_checkpoint_holds_every_variable_of_every_model_by_tf1_name(tmp_path):
  # Keras 3 does not give tf.train.Checkpoint the blocks kept in Python lists;
  # the TF1-name tables must still cover every u, moving statistic and EMA weight.
  cfg, models, path = _saved_run(str(tmp_path), ema_decay=0.99)
  stored = run_dir.read_checkpoint(path)
  assert stored.step == 7
  for part, model in (("generator", models.generator), ("discriminator", models.discriminator),
                      ("ema_generator", models.ema_generator)):
    expected = {k: tuple(v.shape) for k, v in model.tf1_variable_map().items()}
    assert dict(stored.shapes[part]) == expected
  assert "model/g_block1/cbn_0/mean" in stored.shapes["generator"]
  assert "model/d_block2/sn_conv1/u" in stored.shapes["discriminator"]


@pytest.mark.slow
def test_restore_generator_takes_ema_weights_unless_told_otherwise(tmp_path):
  model_dir = str(tmp_path)
  cfg, models, path = _saved_run(model_dir, ema_decay=0.99)
  # Make the EMA differ from G in the saved state.
  for v in models.ema_generator.trainable_variables:
    v.assign(v + 1.0)
  manager = run_dir.make_manager(
      run_dir.make_checkpoint(models, tf.Variable(9, dtype=tf.int64)), model_dir, 2)
  manager.save(checkpoint_number=9)
  ema, step = run_dir.restore_generator(cfg)
  raw, _ = run_dir.restore_generator(cfg, use_ema=False)
  assert step == 9
  name = "model/g_snh0/Matrix"
  np.testing.assert_array_equal(ema.tf1_variable_map()[name].numpy(),
                                models.ema_generator.tf1_variable_map()[name].numpy())
  np.testing.assert_array_equal(raw.tf1_variable_map()[name].numpy(),
                                models.generator.tf1_variable_map()[name].numpy())
  assert ema.compute_dtype == "float32"
  # An explicit older checkpoint.
  _, step = run_dir.restore_generator(cfg, checkpoint_path=path)
  assert step == 7


def test_restore_generator_of_other_architecture_names_the_variables(tmp_path):
  cfg, _, _ = _saved_run(str(tmp_path))
  with pytest.raises(UserError, match=r"different architecture: generator "
                                      r"model/g_block1/cbn_0/beta is \[3, 32\] in the "
                                      r"checkpoint but \[3, 64\] in this model"):
    run_dir.restore_generator(dataclasses.replace(cfg, gf_dim=16))


def test_missing_checkpoint_and_config_say_what_to_do(tmp_path):
  cfg = th.tiny_config(model_dir=str(tmp_path / "empty"))
  assert run_dir.latest_checkpoint(cfg.model_dir) is None
  with pytest.raises(UserError, match="No checkpoint in .*train first"):
    run_dir.restore_generator(cfg)
  with pytest.raises(UserError, match="is not a checkpoint"):
    run_dir.restore_generator(cfg, checkpoint_path=str(tmp_path / "nope" / "ckpt-1"))
  with pytest.raises(UserError, match="config.json does not exist"):
    run_dir.load_run_config(cfg.model_dir)


def test_run_config_round_trips(tmp_path):
  cfg = th.tiny_config(model_dir=str(tmp_path))
  run_dir.write_run_config(cfg, cfg.model_dir)
  assert run_dir.load_run_config(cfg.model_dir) == cfg


def test_resolve_checkpoint_accepts_a_prefix_or_a_directory(tmp_path):
  model_dir = str(tmp_path)
  _, _, path = _saved_run(model_dir)
  assert run_dir.resolve_checkpoint(model_dir) == path
  assert run_dir.resolve_checkpoint("", path) == path
  assert run_dir.resolve_checkpoint("", model_dir) == path
  assert run_dir.resolve_checkpoint("", run_dir.checkpoint_dir(model_dir)) == path
