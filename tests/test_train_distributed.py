"""Multi-replica training gives the same weights as one replica (subprocesses).

Logical CPU devices and TF_CONFIG act when TensorFlow initialises, so each
run is its own process: `python -m sagan_tf.main train` (compared through the
checkpoints it writes) or tests/train_worker.py (multi-worker: each worker
dumps its final weights).
"""

import json
import os
import re
import signal
import sys
import time

import numpy as np
import pytest

import train_helpers as th


def _latest(model_dir):
  import tensorflow as tf
  return tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))


@pytest.mark.slow
def test_two_replicas_with_cross_replica_bn_match_one_replica(tmp_path):
  # Same global batch (4), seeds and data: 1 replica vs 2 logical CPUs
  # (2 x 2 per replica); batch statistics over both replicas. Adam's
  # epsilon is raised to 1: with 1e-8 Adam turns the float noise of
  # gradients that are exactly zero in theory (the bias of a conv feeding a
  # batch norm) into full +-lr steps, which no summation order reproduces.
  common = dict(train_steps=2, cross_replica_bn=True, adam_epsilon=1.0,
                g_attention_res=(), d_attention_res=())
  procs = {}
  for n in (0, 2):
    model_dir = str(tmp_path / f"replicas{n}")
    flags = th.flag_args(model_dir=model_dir, num_cpu_devices=n, **common)
    procs[n] = (model_dir, th.popen(th.train_command(*flags), str(tmp_path / f"log{n}.txt"),
                                    extra_env=th.ONE_THREAD))
  for n, (model_dir, p) in procs.items():
    assert p.wait(timeout=600) == 0, (tmp_path / f"log{n}.txt").read_text()[-3000:]
  log2 = (tmp_path / "log2.txt").read_text()
  assert "2 replica(s), global batch 4 = 2 per replica" in log2
  one = th.read_checkpoint_tables(_latest(procs[0][0]))
  two = th.read_checkpoint_tables(_latest(procs[2][0]))
  same_keys, diffs = th.max_differences(one, two)
  assert same_keys
  assert any(k.startswith("generator:") for k in diffs)
  assert any(k.startswith("discriminator:") for k in diffs)
  worst = max(diffs, key=diffs.get)
  assert diffs[worst] < 1e-5, (worst, diffs[worst])


def _steps_logged(path):
  return [int(s) for s in re.findall(r"step (\d+)/\d+", open(path, errors="replace").read())]


def _launch_workers(tmp_path, name, overrides):
  """Two MultiWorkerMirroredStrategy workers (tests/train_worker.py) on 127.0.0.1.

  Each worker's TMPDIR is tmp_path/tmp<i> (where a non-chief's scratch
  checkpoints must go); returns [(process, log path)].
  """
  cluster = {"worker": [f"127.0.0.1:{p}" for p in th.free_ports(2)]}
  out = []
  for i in range(2):
    tmp = tmp_path / f"tmp{i}"
    tmp.mkdir(exist_ok=True)
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
    log = str(tmp_path / f"{name}_worker{i}.txt")
    cmd = [sys.executable, os.path.join(th.REPO, "tests", "train_worker.py"),
           str(tmp_path / f"{name}_worker{i}.npz"), json.dumps(overrides)]
    out.append((th.popen(cmd, log, extra_env={"TF_CONFIG": tf_config, "TMPDIR": str(tmp),
                                              **th.ONE_THREAD}), log))
  return out


def _wait_all(workers, expected_status, timeout=600):
  try:
    for p, log in workers:
      status = p.wait(timeout=timeout)
      assert status == expected_status, (status, open(log, errors="replace").read()[-3000:])
  finally:
    for p, _ in workers:
      if p.poll() is None:
        p.kill()


def _preempt(workers, target, timeout=600):
  """Waits until both workers trained 2 steps in this launch, SIGTERMs worker
  `target`; both must save and exit with PREEMPTED_EXIT. Returns the step."""
  from sagan_tf.train.loop import PREEMPTED_EXIT
  deadline = time.time() + timeout
  while True:
    steps = [_steps_logged(log) for _, log in workers]
    if all(len(s) >= 3 for s in steps):
      break
    if time.time() > deadline or any(p.poll() is not None for p, _ in workers):
      for p, _ in workers:
        p.kill()
      raise AssertionError("a worker stopped or timed out before training 2 steps:\n" +
                           "\n".join(open(log).read()[-2000:] for _, log in workers))
    time.sleep(0.5)
  workers[target][0].send_signal(signal.SIGTERM)
  _wait_all(workers, PREEMPTED_EXIT)
  saved = set()
  for _, log in workers:
    found = re.findall(r"Preempted at step (\d+)", open(log).read())
    assert len(found) == 1, open(log).read()[-3000:]
    saved.add(int(found[0]))
  assert len(saved) == 1, saved  # both workers saved the same step
  return saved.pop()


@pytest.mark.slow
def test_multi_worker_survives_two_preemptions_and_workers_finish_identical(tmp_path):
  # Two local workers, preempted twice (SIGTERM to the non-chief, relaunch,
  # SIGTERM to the chief, relaunch): after every restart the workers agree
  # on the step to save at (the preemption handler's run counter is restored
  # from the chief's checkpoint on both), and the non-chief's scratch
  # checkpoints go to its TMPDIR, never under the run directory.
  import tensorflow as tf
  model_dir = str(tmp_path / "run")
  overrides = dict(model_dir=model_dir, train_steps=100_000, batch_size=4,
                   checkpoint_every_steps=100_000, g_attention_res=(), d_attention_res=())
  first = _preempt(_launch_workers(tmp_path, "a", overrides), target=1)
  assert _latest(model_dir).endswith(f"ckpt-{first}")

  second_launch = _launch_workers(tmp_path, "b", overrides)
  second = _preempt(second_launch, target=0)
  assert second > first
  for _, log in second_launch:
    text = open(log).read()
    assert f"ckpt-{first} at step {first} of 100000" in text, text[-3000:]
    assert _steps_logged(log)[0] > first

  final_steps = second + 3
  _wait_all(_launch_workers(tmp_path, "c", dict(overrides, train_steps=final_steps)), 0)
  assert "MultiWorkerMirroredStrategy" in (tmp_path / "c_worker0.txt").read_text()
  w0, w1 = (dict(np.load(tmp_path / f"c_worker{i}.npz")) for i in range(2))
  assert int(w0.pop("step")) == int(w1.pop("step")) == final_steps
  same_keys, diffs = th.max_differences(w0, w1)
  assert same_keys and max(diffs.values()) == 0.0, max(diffs.items(), key=lambda kv: kv[1])
  # The chief's checkpoint holds the same weights.
  chief = th.read_checkpoint_tables(_latest(model_dir))
  assert max(float(np.max(np.abs(chief[k] - w0[k]))) for k in w0) == 0.0
  # Only the chief's files are in the run directory; the non-chief's scratch is gone.
  top = sorted(os.listdir(model_dir))
  assert all(n in ("config.json", "launches.jsonl", "checkpoints", "samples") or
             n.startswith("events.out.tfevents.") for n in top), top
  names = {n for n in tf.io.gfile.listdir(os.path.join(model_dir, "checkpoints"))}
  assert all(n == "checkpoint" or n.startswith("ckpt-") for n in names), names
  assert {f"ckpt-{first}.index", f"ckpt-{second}.index",
          f"ckpt-{final_steps}.index"} <= names
  assert os.listdir(tmp_path / "tmp1") == [], os.listdir(tmp_path / "tmp1")
