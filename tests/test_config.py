"""The one typed Config: presets, derived fields, flags, clear errors."""

import dataclasses

import pytest
from absl import flags

from sagan_tf import config as config_lib
from sagan_tf.config import Config, ConfigError


def test_imagenet128_preset_is_the_original_setting():
  c = Config.preset("imagenet128")
  assert (c.image_size, c.num_classes, c.gf_dim, c.df_dim, c.z_dim, c.batch_size) == (
      128, 1000, 64, 64, 128, 256)
  assert (c.lr_g, c.lr_d, c.beta1, c.beta2, c.adam_epsilon) == (1e-4, 4e-4, 0.0, 0.999, 1e-8)
  assert c.g_attention_res == (32,) and c.d_attention_res == (32,)
  assert c.loss == "hinge" and c.d_steps == 1
  assert c.g_mults == (16, 8, 4, 2, 1) and c.d_mults == (1, 2, 4, 8, 16, 16)


def test_feat64_and_demo_presets():
  assert Config.preset("imagenet128_feat64").g_attention_res == (64,)
  demo = Config.preset("demo").validate()
  assert demo.image_size == 32 and demo.dataset == "shapes" and demo.g_mults == (4, 2, 1)


def test_derived_fields_follow_replace():
  c = dataclasses.replace(Config.preset("imagenet128"), image_size=64, gf_dim=2,
                          num_classes=5, g_attention_res=(), d_attention_res=())
  assert c.validate().num_up_blocks == 4 and c.g_mults == (8, 4, 2, 1)
  assert c.d_mults == (1, 2, 4, 8, 8)


@pytest.mark.parametrize("changes,message", [
    (dict(image_size=48), "power of two"),
    (dict(g_attention_res=(256,)), "resolution this model does not have"),
    (dict(d_attention_res=(128,)), "resolution this model does not have"),
    (dict(gf_dim=1), "self-attention needs at least 8"),
    (dict(g_channel_mults=(4, 2)), "needs 5 values"),
    (dict(ema_decay=1.0), "ema_decay"),
])
def test_bad_configs_raise_a_clear_error(changes, message):
  with pytest.raises(ConfigError, match=message):
    dataclasses.replace(Config.preset("imagenet128"), **changes).validate()


def test_batch_not_divisible_by_replicas_is_a_clear_error():
  c = dataclasses.replace(Config.preset("demo"), batch_size=30)
  assert c.per_replica_batch(2) == 15
  with pytest.raises(ConfigError, match="not divisible by the 4 replicas"):
    c.per_replica_batch(4)


def test_unknown_preset_names_the_choices():
  with pytest.raises(ConfigError, match="imagenet128_feat64"):
    Config.preset("imagenet256")


def test_flags_override_the_preset_only_where_set():
  fv = flags.FlagValues()
  config_lib.define_flags(fv)
  fv(["prog", "--preset=imagenet128", "--batch_size=64", "--g_attention_res=32,64",
      "--precision=bfloat16"])
  c = config_lib.from_flags(fv)
  assert c.batch_size == 64 and c.g_attention_res == (32, 64) and c.precision == "bfloat16"
  assert c.lr_d == 4e-4 and c.preset == "imagenet128"
  assert "GLOBAL batch" in fv["batch_size"].help
  # What was typed is kept (bench and eval defaults depend on it), even a
  # value equal to the preset's; it is neither a flag nor saved.
  assert c.command_line == {"preset", "batch_size", "g_attention_res", "precision"}
  assert "command_line" not in fv and "command_line" not in config_lib.to_dict(c)
  assert Config.preset("demo").command_line is None


def test_config_round_trips_through_dict():
  c = Config.preset("demo")
  assert config_lib.from_dict(config_lib.to_dict(c)) == c
