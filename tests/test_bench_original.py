"""`./run.sh bench --original_repo=PATH`: the original TF1 code timed beside the port,
every row in a process of its own (no timing assertions: the numbers are read, not
checked)."""

import dataclasses
import json
import math
import os

import pytest

from sagan_tf import bench
from sagan_tf.config import Config
from sagan_tf.errors import UserError

from conftest import ORIGINAL, needs_original


def _tiny(tmp_path, **overrides):
  # The original builds 128x128 models only: the imagenet128 layout at width 4.
  fields = dict(gf_dim=4, df_dim=4, num_classes=3, z_dim=8, batch_size=2, bench_repeats=1,
                bench_iters=1, bench_variants="float32", json=str(tmp_path / "bench.json"),
                original_repo=ORIGINAL)
  return dataclasses.replace(Config.preset("imagenet128"), **dict(fields, **overrides))


def _flop_saved(cfg) -> int:
  """FLOP per iteration the port saves, over the 4 G forward passes of an
  iteration (train/flops.py): G's 1x1 shortcut conv before the upsampling
  (the original runs it after: 3/4 of each block's shortcut), and snconv1 in
  the sub-pixel phases form where this machine's policy picks it
  (upsample_conv.py; bench runs without XLA)."""
  from sagan_tf import platform_info
  from sagan_tf.layers import fast_conv, upsample_conv
  forward_ops = fast_conv.use_forward_ops("auto", "CPU", platform_info.onednn_enabled(), False)
  b, cin, res, total = cfg.batch_size, cfg.gf_dim * cfg.g_mults[0], 4, 0
  for mult in cfg.g_mults:
    cout = cfg.gf_dim * mult
    total += 2 * b * (2 * res) ** 2 * cin * cout * 3 // 4
    if not forward_ops and res >= upsample_conv.SUBPIXEL_MIN_SIZE["native"]:
      total += 2 * b * (2 * res) ** 2 * 9 * cin * cout - 2 * b * res ** 2 * 16 * cin * cout
    res *= 2
    cin = cout
  return 4 * total


def _parameters(cfg) -> int:
  from sagan_tf.train import setup
  models = setup.build_gan(cfg)
  return sum(int(v.shape.num_elements()) for m in (models.generator, models.discriminator)
             for v in m.trainable_variables)


@needs_original
@pytest.mark.slow   # two processes building the 128x128 graphs: ~1 min of CPU
def test_the_original_row_runs_beside_the_port_with_ratios_and_own_peaks(tmp_path, capsys):
  cfg = _tiny(tmp_path)
  assert bench.bench(cfg) == 0
  table = capsys.readouterr().out
  lines = table.splitlines()
  head = next(i for i, line in enumerate(lines) if line.startswith("variant"))
  assert "x original" in lines[head] and "peak MiB" in lines[head]
  rows = [line.split()[0] for line in lines[head + 2:head + 4]]
  assert rows == ["original", "float32"]
  with open(cfg.json) as f:
    out = json.load(f)
  assert out["ratios_to"] == "original"
  original, port = out["variants"]
  assert original["name"] == "original" and original["ratio_to_first"] == 1.0
  ratio = port["ratio_to_first"]
  assert math.isfinite(ratio) and ratio > 0
  assert ratio == pytest.approx(port["images_per_s"] / original["images_per_s"])
  counted = os.environ.get("TF_CPU_ALLOCATOR_USE_BFC") == "true"  # run.sh exports it
  for row in (original, port):
    assert row["batch"] == 2 and row["seconds_per_iteration"] > 0
    assert row["peak_rss_mb"] > 100          # a process with TensorFlow loaded
    # TF's allocator peak: at least the weights and the two Adam slots (float32).
    if counted:
      assert 3 * 4 * _parameters(cfg) / 2 ** 20 < row["tensor_peak_mb"] < row["peak_rss_mb"]
    else:
      assert row["tensor_peak_mb"] is None
  # Two independent FLOP counts (the original's TF1 graph, the port's traced
  # models) differ by exactly the port's reordered 1x1 shortcut and sub-pixel convs.
  assert original["flops_per_iteration"] - port["flops_per_iteration"] == _flop_saved(cfg)


def test_a_path_without_the_original_is_refused_before_anything_runs(tmp_path):
  with pytest.raises(UserError, match="is not a directory"):
    bench.bench(_tiny(tmp_path, original_repo=str(tmp_path / "nowhere")))
  (tmp_path / "ops.py").write_text("# not the original\n")
  with pytest.raises(UserError, match=r"ops.py has git blob .*model.py is missing"):
    bench.bench(_tiny(tmp_path, original_repo=str(tmp_path)))


@needs_original  # the checkout is checked first
def test_an_architecture_the_original_cannot_build_is_refused(tmp_path):
  with pytest.raises(UserError, match="128x128 models only"):
    bench.bench(_tiny(tmp_path, image_size=64, df_dim=8))
  with pytest.raises(UserError, match="--what=input"):
    bench.bench(_tiny(tmp_path, what="input"))
