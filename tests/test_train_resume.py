"""Killed runs resume: SIGKILL loses only the steps after the last checkpoint,
SIGTERM writes a checkpoint before exiting (subprocesses of the real CLI)."""

import re
import signal
import time

import pytest

import train_helpers as th


def _wait_for(predicate, proc, log_path, timeout=400.0, what=""):
  deadline = time.time() + timeout
  while time.time() < deadline:
    text = open(log_path, errors="replace").read()
    value = predicate(text)
    if value:
      return value
    if proc.poll() is not None:
      raise AssertionError(f"process exited ({proc.returncode}) before {what}:\n{text[-3000:]}")
    time.sleep(0.5)
  proc.kill()
  raise AssertionError(f"timed out waiting for {what}")


def _steps_logged(text):
  return [int(s) for s in re.findall(r"step (\d+)/\d+", text)]


@pytest.mark.slow
def test_sigkill_resumes_from_checkpoint_and_sigterm_checkpoints_first(tmp_path):
  import tensorflow as tf
  from sagan_tf import run_dir
  model_dir = str(tmp_path / "run")
  cmd = th.train_command(*th.flag_args(model_dir=model_dir, train_steps=100_000,
                                       checkpoint_every_steps=2, g_attention_res=(),
                                       d_attention_res=(), summary_every_steps=1000))

  # 1. Killed with SIGKILL once a checkpoint exists.
  log1 = str(tmp_path / "first.txt")
  proc = th.popen(cmd, log1)
  _wait_for(lambda _: run_dir.latest_checkpoint(model_dir), proc, log1,
            what="the first checkpoint")
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=60)
  killed_at = run_dir.latest_checkpoint(model_dir)
  step_k = run_dir.checkpoint_step(killed_at)
  assert step_k >= 2 and killed_at.endswith(f"ckpt-{step_k}")

  # 2. The same command resumes from that checkpoint's step; SIGTERM then
  #    stops it with a checkpoint of the step it reached.
  log2 = str(tmp_path / "second.txt")
  proc = th.popen(cmd, log2)
  _wait_for(lambda t: any(s > step_k for s in _steps_logged(t)), proc, log2,
            what="a step after the resume")
  text = open(log2).read()
  assert f"Resuming from {killed_at} at step {step_k} of 100000" in text
  assert _steps_logged(text)[0] == step_k + 1
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=120) == 128 + signal.SIGTERM
  text = open(log2).read()
  stopped = re.search(r"SIGTERM at step (\d+): checkpoint (\S+) written", text)
  assert stopped, text[-2000:]
  step_m = int(stopped.group(1))
  assert step_m > step_k
  latest = run_dir.latest_checkpoint(model_dir)
  assert latest == stopped.group(2) and run_dir.checkpoint_step(latest) == step_m
  assert tf.io.gfile.exists(latest + ".index")
