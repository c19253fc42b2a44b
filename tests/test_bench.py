"""`./run.sh bench`: the table/JSON plumbing on a tiny model (no timing assertions:
speed is read from the benchmark's printed numbers, not checked by tests)."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from sagan_tf import bench
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
  table = capsys.readouterr().out
  assert "float32+spl2" in table and "peak resident memory" in table


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
  demo = Config.preset("demo")
  cfg = bench.resolve_config(demo, explicit=set())
  assert (cfg.preset, cfg.image_size, cfg.batch_size) == ("imagenet128", 128, 8)
  assert (cfg.bench_variants, cfg.bench_iters) == ("float32,float32+xla", 1)
  assert bench.resolve_config(demo, explicit=set(), num_replicas=2).batch_size == 16
  cfg = bench.resolve_config(demo, explicit={"preset"})
  assert (cfg.preset, cfg.batch_size, cfg.bench_variants) == ("demo", demo.batch_size, "")
  assert [v.name for v in bench.parse_variants(cfg.bench_variants)] == list(
      bench.ALL_TRAIN_VARIANTS)
  cfg = bench.resolve_config(dataclasses.replace(demo, batch_size=4), explicit={"batch_size"})
  assert (cfg.preset, cfg.batch_size) == ("imagenet128", 4)
  assert bench.resolve_config(demo, explicit=None) is demo  # library call: as given
