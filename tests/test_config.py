"""The one typed Config: presets, derived fields, flags, clear errors."""

import dataclasses

import pytest
from absl import flags

from sagan_tf import config as config_lib
from sagan_tf import platform_info as pi
from sagan_tf.config import Config, ConfigError

import cpuinfo_fixtures as cpuinfo


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


def _invocation(mode, *argv):
  fv = flags.FlagValues()
  config_lib.define_flags(fv)
  fv(["prog", *argv])
  return config_lib.from_flags(fv, mode)


def test_flags_override_the_preset_only_where_set():
  c, typed = _invocation("train", "--preset=imagenet128", "--batch_size=64",
                         "--g_attention_res=32,64", "--precision=bfloat16")
  assert c.batch_size == 64 and c.g_attention_res == (32, 64) and c.precision == "bfloat16"
  assert c.lr_d == 4e-4 and c.preset == "imagenet128"
  # What was typed travels beside the Config (merge depends on it), even a
  # value equal to the preset's; it is neither a field nor saved.
  assert typed == {"preset", "batch_size", "g_attention_res", "precision"}
  assert "command_line" not in config_lib.to_dict(c)


def test_the_preset_is_the_modes_unless_typed():
  # One place says which preset a mode starts from; the flag has no default
  # of its own that could disagree with it.
  assert _invocation("train").config == Config.preset("demo")
  assert _invocation("eval").config.preset == "demo"
  bench_cfg, typed = _invocation("bench")
  assert bench_cfg == Config.preset("imagenet128") and typed == frozenset()
  assert _invocation("bench", "--preset=demo").config == Config.preset("demo")
  fv = flags.FlagValues()
  config_lib.define_flags(fv)
  assert fv["preset"].default is None and "Default demo (bench: imagenet128)" in fv[
      "preset"].help
  # Config() is the imagenet128 preset, field and all (the JSON a run writes).
  assert Config().preset == "imagenet128" and Config() == Config.preset("imagenet128")
  assert config_lib.to_dict(Config())["preset"] == "imagenet128"


def test_every_field_declares_a_kind_and_every_kind_is_used():
  kinds = {f.name: f.metadata["kind"] for f in dataclasses.fields(Config)}
  assert set(kinds.values()) == set(config_lib.KINDS)
  assert config_lib.fields_of(config_lib.ARCHITECTURE) == (
      "image_size", "num_classes", "z_dim", "gf_dim", "df_dim", "g_channel_mults",
      "d_channel_mults", "g_attention_res", "d_attention_res", "attention_variant")
  assert config_lib.kinds_on_resume("refused") == (config_lib.ARCHITECTURE,)
  with pytest.raises(TypeError):
    config_lib._f(1, "no kind")  # pylint: disable=protected-access


def _stored():
  """A run trained with the imagenet128 preset at a small width, seed 3."""
  return Config.preset("imagenet128", gf_dim=8, df_dim=8, num_samples=500, seed=3,
                       model_dir="/old/place")


@pytest.mark.parametrize("mode", config_lib.READS_RUN)
def test_a_mode_that_reads_a_run_takes_the_run_then_what_was_typed(mode, caplog):
  # Typed on the command line (demo preset): an eval option, a tool option,
  # a data field, and an architecture field that the checkpoints fix.
  given, typed = _invocation(mode, "--model_dir=/run", "--eval_batch_size=7",
                             "--num_images=2", "--dataset=shapes", "--gf_dim=64",
                             "--use_ema=false")
  cfg = config_lib.merge(mode, given, typed, stored=_stored())
  assert (cfg.model_dir, cfg.eval_batch_size, cfg.num_images, cfg.dataset, cfg.use_ema) == (
      "/run", 7, 2, "shapes", False)
  # Not typed: the run's own values, not the demo preset's.
  assert (cfg.preset, cfg.gf_dim, cfg.image_size, cfg.num_samples, cfg.seed) == (
      "imagenet128", 8, 128, 500, 3)
  assert "Ignoring --gf_dim: the run in /run was trained with gf_dim=8" in caplog.text


def test_the_typed_value_counts_even_when_it_equals_the_presets():
  given, typed = _invocation("eval", "--model_dir=/run", "--num_samples=10000")
  assert given.num_samples == Config.preset("demo").num_samples
  assert config_lib.merge("eval", given, typed, stored=_stored()).num_samples == 10_000


def test_a_config_built_in_code_counts_its_differences_from_its_preset_as_typed():
  given = Config.preset("demo", model_dir="/run", truncation=0.5)
  assert config_lib.typed_fields(given) == {"preset", "model_dir", "truncation"}
  cfg = config_lib.merge("sample", given, stored=_stored())
  assert (cfg.truncation, cfg.seed, cfg.gf_dim, cfg.model_dir) == (0.5, 3, 8, "/run")
  with pytest.raises(ValueError, match="stored"):
    config_lib.merge("sample", given)


def test_train_and_bench_start_from_the_invocation():
  given, typed = _invocation("train", "--model_dir=/run", "--lr_g=0.5")
  assert config_lib.merge("train", given, typed) == given


def test_bench_context_defaults_apply_only_to_what_was_not_typed():
  imagenet = Config.preset("imagenet128")
  cfg = config_lib.merge("bench", imagenet, typed=set())
  assert (cfg.preset, cfg.image_size, cfg.batch_size) == ("imagenet128", 128, 8)
  assert (cfg.bench_variants, cfg.bench_iters) == ("float32,float32+xla", 1)
  assert config_lib.merge("bench", imagenet, typed=set(), num_replicas=2).batch_size == 16
  assert config_lib.merge("bench", dataclasses.replace(imagenet, batch_size=4),
                          typed={"batch_size"}).batch_size == 4
  demo = Config.preset("demo")
  assert config_lib.merge("bench", demo, typed={"preset"}) == demo
  # The same rules never touch another mode (train's own rule sets only model_dir).
  assert config_lib.merge("train", imagenet, typed=set()) == dataclasses.replace(
      imagenet, model_dir="runs/imagenet128-data")


def test_train_compiles_128px_float32_models_on_eigen_cpus_unless_typed():
  imagenet = Config.preset("imagenet128")
  merge = lambda cfg, typed=frozenset(), **ctx: config_lib.merge("train", cfg, typed, **ctx)
  assert merge(imagenet, cpu_backend="eigen").jit_compile
  assert merge(Config.preset("imagenet128_feat64"), cpu_backend="eigen").jit_compile
  # Not on oneDNN CPUs, GPUs, TPUs (eigen_cpu False or unknown), not in
  # bfloat16, not for the demo, not against a typed --nojit_compile.
  assert not merge(imagenet, cpu_backend="onednn").jit_compile
  assert not merge(imagenet).jit_compile
  assert not merge(dataclasses.replace(imagenet, precision="bfloat16"), {"precision"},
                   cpu_backend="eigen").jit_compile
  assert not merge(Config.preset("demo"), {"preset"}, cpu_backend="eigen").jit_compile
  assert not merge(dataclasses.replace(imagenet, image_size=64), {"image_size"},
                   cpu_backend="eigen").jit_compile
  assert merge(dataclasses.replace(Config.preset("demo"), image_size=128),
               {"preset", "image_size"}, cpu_backend="eigen").jit_compile
  # 128x128 records make a 128x128 model (the data-facts rule runs first).
  assert merge(Config.preset("demo"), {"preset"}, cpu_backend="eigen",
               data_image_size=128).jit_compile
  assert not merge(imagenet, {"jit_compile"}, cpu_backend="eigen").jit_compile
  # Other modes never: bench's variants say +xla themselves.
  assert not config_lib.merge("bench", imagenet, set(), cpu_backend="eigen").jit_compile


def test_cpu_backend_fact_follows_the_strategy_and_onednn(monkeypatch):
  from sagan_tf import strategy  # pylint: disable=g-import-not-at-top
  cfg = Config.preset("imagenet128")
  monkeypatch.setattr(pi, "onednn_enabled", lambda: False)
  assert strategy.cpu_backend(cfg) == "eigen"  # this machine has no GPU
  assert strategy.cpu_backend(dataclasses.replace(cfg, tpu="local")) is None
  monkeypatch.setattr(strategy.tf.config, "list_physical_devices",
                      lambda kind=None: ["/physical_device:GPU:0"] if kind == "GPU" else [])
  assert strategy.cpu_backend(cfg) is None  # a GPU takes the step
  split = dataclasses.replace(cfg, num_cpu_devices=2)
  assert strategy.cpu_backend(split) == "eigen"
  monkeypatch.setattr(pi, "onednn_enabled", lambda: True)
  assert strategy.cpu_backend(split) == "onednn"
  monkeypatch.setenv("TF_CONFIG", "{}")  # multi-worker ignores the CPU split
  assert strategy.cpu_backend(split) is None


def test_the_demo_trains_the_wider_bfloat16_model_on_bf16_cpus_with_onednn():
  demo = Config.preset("demo")
  for cpu in (cpuinfo.INTEL_SAPPHIRE_RAPIDS, cpuinfo.AMD_ZEN5):  # AMX; AVX512_BF16 only
    bf16 = dict(cpu_backend="onednn", bf16_hardware=pi.parse_cpuinfo(cpu).bf16_hardware)
    cfg = config_lib.merge("train", demo, {"preset"}, **bf16)
    assert (cfg.gf_dim, cfg.df_dim, cfg.batch_size, cfg.precision, cfg.train_steps) == (
        32, 32, 32, "bfloat16", 6500)
    assert not cfg.jit_compile
  # A typed flag wins; the others still follow the CPU.
  typed = config_lib.merge("train", dataclasses.replace(demo, batch_size=16),
                           {"preset", "batch_size"}, **bf16)
  assert (typed.batch_size, typed.gf_dim) == (16, 32)
  # AVX2 (Eigen), oneDNN switched off by hand, AVX-512 without bf16, or another
  # preset: unchanged.
  for ctx in (dict(cpu_backend="eigen",
                   bf16_hardware=pi.parse_cpuinfo(cpuinfo.AMD_ZEN3).bf16_hardware),
              dict(bf16, cpu_backend="eigen"),
              dict(cpu_backend="onednn",
                   bf16_hardware=pi.parse_cpuinfo(cpuinfo.INTEL_SKYLAKE).bf16_hardware),
              {}):
    assert config_lib.merge("train", demo, {"preset"}, **ctx) == demo.validate(), ctx
  imagenet = Config.preset("imagenet128")
  assert config_lib.merge("train", imagenet, set(), **bf16).gf_dim == imagenet.gf_dim


def test_differences_compare_what_the_models_build():
  cfg = Config.preset("demo")
  other = dataclasses.replace(cfg, gf_dim=16, d_attention_res=(8,), lr_g=1.0, train_steps=9)
  arch = config_lib.kinds_on_resume("refused")
  assert config_lib.differences(cfg, other, arch) == (
      "gf_dim: 24 -> 16", "d_attention_res: (16,) -> (8,)")
  assert config_lib.differences(cfg, other, config_lib.kinds_on_resume("setting")) == (
      "lr_g: 0.0004 -> 1.0",)
  # Empty channel multipliers mean the original rule: the same model.
  assert config_lib.differences(cfg, dataclasses.replace(cfg, g_channel_mults=cfg.g_mults),
                                arch) == ()


def test_config_round_trips_through_dict():
  c = Config.preset("demo")
  assert config_lib.from_dict(config_lib.to_dict(c)) == c


def test_main_runs_the_modes_merge_knows():
  from sagan_tf import main  # pylint: disable=g-import-not-at-top
  assert tuple(main.MODES) == config_lib.MODES
