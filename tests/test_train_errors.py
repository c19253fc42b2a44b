"""Bad input stops training before the first iteration with one clear sentence."""

import pytest
import tensorflow as tf

from sagan_tf.errors import UserError
from sagan_tf import run_dir
from sagan_tf.train import loop, setup
from sagan_tf.strategy import make_strategy

import train_helpers as th


def _cli(*flags, timeout=300):
  return th.run(th.train_command(*flags), timeout=timeout)


def test_unknown_preset_and_flag_values_are_refused():
  result = _cli("--preset=no_such_preset")
  assert result.returncode != 0 and "no_such_preset" in result.stderr
  assert "imagenet128" in result.stderr  # lists the choices
  result = _cli("--loss=wasserstein")
  assert result.returncode != 0 and "--loss" in result.stderr and "hinge" in result.stderr


def test_attention_resolution_the_model_lacks_is_refused(tmp_path):
  result = _cli(*th.flag_args(model_dir=str(tmp_path), g_attention_res=(64,)))
  assert result.returncode == 2
  assert "--g_attention_res has 64, a resolution this model does not have" in result.stderr


@pytest.mark.slow
def test_global_batch_not_divisible_by_replicas_is_refused(tmp_path):
  result = _cli(*th.flag_args(model_dir=str(tmp_path), num_cpu_devices=3, batch_size=4))
  assert result.returncode == 2, result.stderr[-2000:]
  assert "--batch_size=4 (the global batch) is not divisible by the 3 replicas" in result.stderr
  assert not tf.io.gfile.exists(str(tmp_path / "config.json"))


def test_model_dir_without_model_dir_is_refused():
  with pytest.raises(UserError, match="Training needs --model_dir"):
    loop.train(th.tiny_config(model_dir=""), typed={"model_dir"})  # --model_dir=


def test_model_dir_of_another_architecture_is_refused_by_config(tmp_path):
  run_dir.write_run_config(th.tiny_config(gf_dim=16), str(tmp_path))
  with pytest.raises(UserError, match=r"holds a run of a different architecture "
                                      r"\(gf_dim: 16 -> 8\); use a new --model_dir"):
    loop.train(th.tiny_config(model_dir=str(tmp_path)))


@pytest.mark.slow
def test_model_dir_checkpoint_of_another_architecture_names_the_variables(tmp_path):
  # A checkpoint without config.json (e.g. copied over): the variables decide.
  other = th.tiny_config(model_dir=str(tmp_path), df_dim=16)
  models = setup.build_gan(other)
  manager = run_dir.make_manager(
      run_dir.make_checkpoint(models, tf.Variable(3, dtype=tf.int64)), other.model_dir, 1)
  manager.save(checkpoint_number=3)
  with pytest.raises(UserError, match=r"ckpt-3 is of a different architecture: "
                                      r"discriminator model/d_block2/sn_conv1/biases is \[32\] "
                                      r"in the checkpoint but \[16\] in this model"):
    loop.train(th.tiny_config(model_dir=str(tmp_path)))


def test_tpu_without_tpu_support_is_named():
  # The plain tensorflow wheel (what this suite runs on) has no TPU support:
  # make_strategy says so before looking for the TPU (test_tpu.py has both messages).
  with pytest.raises(UserError, match=r"this TensorFlow \(tensorflow [\d.]+\) has no TPU support"):
    make_strategy(th.tiny_config(tpu="no-such-tpu-xyz"))


def test_missing_data_stops_before_training(tmp_path):
  cfg = th.tiny_config(model_dir=str(tmp_path / "run"),
                       dataset=f"tfrecords:{tmp_path}/missing/train-*.tfrecords")
  with pytest.raises(UserError, match="matches no files"):
    loop.train(cfg)
  assert run_dir.latest_checkpoint(cfg.model_dir) is None
