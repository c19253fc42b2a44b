"""Faults with a real process beside (issue 18): export while a training run
rotates its checkpoints every step."""

import os
import time

import tensorflow as tf

from sagan_tf import export as export_lib
from sagan_tf import run_dir

import train_helpers as th

LIVE = dict(batch_size=2, train_steps=100000, checkpoint_every_steps=1, keep_checkpoints=1,
            summary_every_steps=100000)


def _wait_for_checkpoint(model_dir, proc, log_path, timeout=600):
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert proc.poll() is None, open(log_path).read()[-3000:]
    latest = run_dir.latest_checkpoint_or_none(model_dir)
    if latest:
      return latest
    time.sleep(0.2)
  raise AssertionError("no checkpoint after %d s: %s" % (timeout, open(log_path).read()[-3000:]))


def test_export_beside_a_training_run_that_rotates_every_step_succeeds(tmp_path, caplog):
  caplog.set_level("INFO")
  model_dir = str(tmp_path / "run")
  log_path = str(tmp_path / "train.log")
  proc = th.popen(th.train_command(*th.flag_args(model_dir=model_dir, **LIVE)), log_path,
                  extra_env=th.ONE_THREAD)
  try:
    first = run_dir.checkpoint_step(_wait_for_checkpoint(model_dir, proc, log_path))
    cfg = th.tiny_config(model_dir=model_dir, **LIVE)
    steps = []
    for _ in range(4):  # reading only: where the rotation bites
      _, _, step, source = run_dir.restore_for_mode(cfg, "export")
      steps.append(step)
      assert source["checkpoint"].endswith(f"ckpt-{step}")
    # And the whole export mode once (SavedModel written, checked, published).
    assert export_lib.export(cfg) == 0
    exported = [int(v) for v in os.listdir(run_dir.export_root(cfg)) if v.isdigit()]
    assert proc.poll() is None, "training ended before the exports did"
    last = run_dir.checkpoint_step(run_dir.latest_checkpoint(model_dir))
  finally:
    proc.kill()
    proc.wait()
  # The run rotated under every attempt: each read a newer checkpoint, and
  # with --keep_checkpoints=1 none of them is on disk any more.
  assert first <= steps[0] < steps[1] < steps[2] < steps[3] < exported[0] < last, (
      first, steps, exported, last)
  ckpts = run_dir.checkpoint_dir(model_dir)
  for step in steps:
    assert not tf.io.gfile.exists(os.path.join(ckpts, f"ckpt-{step}.index"))
  assert not [n for n in os.listdir(ckpts) if n.startswith(".pinned")]
