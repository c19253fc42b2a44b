"""Quiet start-up: TensorFlow's start-up lines (the cuInit probe on a machine
without a GPU, cudart_stub, CPU-feature notes) are hidden unless --verbose;
the program's own messages stay."""

import os
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


def test_the_converters_and_their_workers_are_quiet_too(tmp_path):
  # Two shards on two spawned workers: each worker imports TensorFlow itself.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for c in range(2):
    folder = tmp_path / "images" / f"c{c}"
    os.makedirs(folder)
    for i in range(2):
      Image.new("RGB", (40, 40), (100 * c, 50 * i, 0)).save(folder / f"{i}.png")
  result = th.run([sys.executable, "-m", "tfrecords_tools.folder_to_tfrecords",
                   f"--input_dir={tmp_path / 'images'}", f"--output_dir={tmp_path / 'out'}",
                   "--image_size=32", "--num_shards=2", "--num_workers=2"], timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  output = result.stdout + result.stderr
  assert [m for m in STARTUP_MARKS if m in output] == [], output[-3000:]
  assert output.count("Wrote 4 images in 2 shard(s)") == 1, output[-3000:]  # once
  inspect = th.run([sys.executable, "-m", "tfrecords_tools.inspect_tfrecords",
                    f"--input={tmp_path / 'out'}"], timeout=300)
  assert inspect.returncode == 0, inspect.stderr[-3000:]
  assert [m for m in STARTUP_MARKS if m in inspect.stdout + inspect.stderr] == []
