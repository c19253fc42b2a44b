"""Quiet start-up: TensorFlow's start-up lines (the cuInit probe on a machine
without a GPU, cudart_stub, CPU-feature notes) are hidden unless --verbose;
the program's own messages stay."""

import sys

import train_helpers as th

STARTUP_MARKS = ("cuInit", "cudart_stub", "cpu_feature_guard", "absl::InitializeLog",
                 "To enable the following instructions")


def _eval_missing_run(tmp_path, *extra):
  return th.run([sys.executable, "-m", "sagan_tf.main", "eval",
                 f"--model_dir={tmp_path / 'none'}", *extra], timeout=300)


def test_no_tensorflow_start_up_lines_by_default(tmp_path):
  result = _eval_missing_run(tmp_path)
  assert result.returncode == 2
  output = result.stdout + result.stderr
  assert [m for m in STARTUP_MARKS if m in output] == [], output[-3000:]
  assert "config.json does not exist" in result.stderr  # the real message stays


def test_verbose_shows_them(tmp_path):
  result = _eval_missing_run(tmp_path, "--verbose")
  assert result.returncode == 2
  # Every TensorFlow build prints at least one of them while loading (the CUDA
  # probe on a GPU-less machine such as CI, or the CPU-feature note).
  assert any(m in result.stderr for m in STARTUP_MARKS), result.stderr[-3000:]
  assert "config.json does not exist" in result.stderr
