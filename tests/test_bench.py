"""`./run.sh bench`: the table/JSON plumbing on a tiny model (no timing assertions:
speed is read from the benchmark's printed numbers, not checked by tests)."""

import dataclasses
import json

import pytest
import tensorflow as tf

from cpuinfo_fixtures import AMD_ZEN3, INTEL_SAPPHIRE_RAPIDS
from sagan_tf import bench
from sagan_tf import config as config_lib
from sagan_tf import platform_info as pi
from sagan_tf.config import Config
from sagan_tf.errors import UserError


def _tiny(tmp_path, **overrides):
  return dataclasses.replace(
      Config.preset("demo"), image_size=32, num_classes=3, z_dim=8, gf_dim=4, df_dim=4,
      g_attention_res=(), d_attention_res=(), batch_size=2, bench_repeats=1, bench_iters=1,
      json=str(tmp_path / "bench.json"), **overrides)


@pytest.mark.slow
def test_bench_writes_every_variant_with_ratios_to_the_first(tmp_path, capsys):
  cfg = _tiny(tmp_path, bench_variants="float32,float32+spl2")
  assert bench.bench(cfg) == 0
  with open(cfg.json) as f:
    out = json.load(f)
  names = [v["name"] for v in out["variants"]]
  assert names == ["float32", "float32+spl2"]
  for v in out["variants"]:
    assert v["preset"] == "demo" and v["batch"] == 2
    assert v["seconds_per_iteration"] > 0
    assert v["images_per_s"] == pytest.approx(2 / v["seconds_per_iteration"])
  first, second = out["variants"]
  assert first["ratio_to_first"] == 1.0
  assert second["ratio_to_first"] == pytest.approx(second["images_per_s"] / first["images_per_s"])
  assert second["iterations_per_repeat"] == 2   # one call of steps_per_loop=2
  assert out["peak_rss_mb"] > 0
  assert (out["cpu_kind"], out["onednn"]) == (pi.cpu_info().kind, pi.onednn_enabled())
  # Same model, same FLOP per iteration (counted from the traced models, tests/test_flops.py).
  assert first["flops_per_iteration"] == second["flops_per_iteration"] > 0
  for v in out["variants"]:
    assert v["gflops_per_s"] == pytest.approx(
        v["flops_per_iteration"] / v["seconds_per_iteration"] / 1e9)
    assert v["share_of_peak"] == pytest.approx(
        v["gflops_per_s"] / v["peak_gflops_estimate"])
    assert v["conv_gradients"] == ("native" if pi.onednn_enabled() else "forward ops")
  table = capsys.readouterr().out
  assert "float32+spl2" in table and "peak resident memory" in table
  assert pi.describe() in table and "% peak" in table
  # A 32x32 model: training's default is the plain float32 row on any CPU.
  assert "Training this model here runs float32 unless told otherwise" in table


def test_variant_names_parse_to_precision_xla_and_steps_per_loop():
  v = bench.parse_variant("bfloat16+xla+spl10")
  assert (v.precision, v.jit_compile, v.steps_per_loop) == ("bfloat16", True, 10)
  assert bench.parse_variant("float32") == bench.Variant("float32", "float32", False, 1)
  with pytest.raises(UserError, match="precision"):
    bench.parse_variant("fp16")
  with pytest.raises(UserError, match="unknown part"):
    bench.parse_variant("float32+fast")
  with pytest.raises(UserError, match="twice"):
    bench.parse_variants("float32,float32")


def test_defaults_are_imagenet128_at_batch_8_unless_the_user_says_otherwise():
  # The rules themselves are config.MODE_PRESETS / CONTEXT_DEFAULTS (test_config);
  # here: bench's own parsing of what they give, on CPUs without and with bf16 hardware.
  cfg = config_lib.merge("bench", Config.preset("imagenet128"), typed=set())
  assert [v.name for v in bench.parse_variants(cfg.bench_variants)] == [
      "float32", "float32+xla"]
  cfg = config_lib.merge("bench", Config.preset("imagenet128"), typed=set(), bf16_hardware=True)
  assert [v.name for v in bench.parse_variants(cfg.bench_variants)] == [
      "float32", "float32+xla", "bfloat16"]
  demo = config_lib.merge("bench", Config.preset("demo"), typed={"preset"})
  assert (demo.batch_size, demo.bench_variants) == (16, "")
  assert [v.name for v in bench.parse_variants(demo.bench_variants)] == list(
      bench.ALL_TRAIN_VARIANTS)


def test_bfloat16_is_a_default_variant_only_where_the_cpu_has_bf16_hardware(monkeypatch):
  amx, amd = pi.parse_cpuinfo(INTEL_SAPPHIRE_RAPIDS), pi.parse_cpuinfo(AMD_ZEN3)
  assert bench.large_default_variants(amx) == "float32,float32+xla,bfloat16"
  assert bench.large_default_variants(amd) == "float32,float32+xla"
  monkeypatch.setattr(pi, "cpu_info", lambda: amx)
  cfg = config_lib.merge("bench", Config.preset("imagenet128"), typed=set(),
                         bf16_hardware=pi.cpu_info().bf16_hardware)
  assert cfg.bench_variants == "float32,float32+xla,bfloat16"
  assert [v.precision for v in bench.parse_variants(cfg.bench_variants)] == [
      "float32", "float32", "bfloat16"]


def test_header_names_the_cpu_kind_onednn_and_the_peak_estimate():
  head = bench.platform_header(pi.parse_cpuinfo(AMD_ZEN3), onednn=False)
  assert "AMD EPYC 7B13: AVX2, no bf16 hardware, oneDNN off" in head
  assert "float32 2 x 2.45 GHz x 32 FLOP/cycle = 157 GFLOP/s" in head
  head = bench.platform_header(pi.parse_cpuinfo(INTEL_SAPPHIRE_RAPIDS), onednn=True)
  assert "AVX-512+AMX, bf16 hardware, oneDNN on" in head
  assert "bfloat16 1 x 2.70 GHz x 1024 FLOP/cycle = 2765 GFLOP/s" in head
  assert "unknown for this CPU" in bench.platform_header(pi.parse_cpuinfo(""), onednn=False)


def test_table_gives_flop_rate_share_of_peak_and_conv_gradients():
  r = bench.VariantTiming(name="float32", preset="imagenet128", batch=8, global_batch=8,
                   seconds_per_iteration=10.0, images_per_s=0.8, repeat_seconds=[10.0],
                   cpu_seconds_per_iteration=20.0, warmup_seconds=100.0,
                   iterations_per_repeat=1, flops_per_iteration=int(1.2e12),
                   conv_gradients="forward ops", peak_flops=160e9)
  assert r.flops_per_s == pytest.approx(120e9) and r.share_of_peak == pytest.approx(0.75)
  row = bench.format_table([r]).splitlines()[2]
  assert "120.0" in row and "75%" in row and "forward ops" in row
  unknown = dataclasses.replace(r, peak_flops=None, flops_per_iteration=0)
  assert unknown.share_of_peak is None and "n/a" in bench.format_table([unknown])
  assert r.to_json()["share_of_peak"] == pytest.approx(0.75)


def test_conv_gradient_column_follows_the_policy(two_cpu_strategy, monkeypatch):
  monkeypatch.setattr(pi, "onednn_enabled", lambda: False)    # Eigen kernels, as on CI
  cfg = Config.preset("demo")
  assert bench.device_type(two_cpu_strategy) == "CPU"
  assert bench.device_type(tf.distribute.get_strategy()) == "CPU"
  cols = bench.platform_columns(cfg, two_cpu_strategy)
  assert cols["conv_gradients"] == "forward ops"
  assert cols["peak_flops"] == pi.cpu_info().peak_flops("float32")
  xla = bench.platform_columns(dataclasses.replace(cfg, jit_compile=True), two_cpu_strategy)
  assert xla["conv_gradients"] == "native"
  forced = dataclasses.replace(cfg, conv_gradients="native")
  assert bench.platform_columns(forced, two_cpu_strategy)["conv_gradients"] == "native"
  monkeypatch.setattr(pi, "onednn_enabled", lambda: True)
  assert bench.platform_columns(cfg, two_cpu_strategy)["conv_gradients"] == "native"
