"""Multi-replica training gives the same weights as one replica (subprocesses).

Logical CPU devices and TF_CONFIG act when TensorFlow initialises, so each
run is its own process: `python -m sagan_tf.main train` (compared through the
checkpoints it writes) or tests/train_worker.py (multi-worker: each worker
dumps its final weights).
"""

import json
import os
import sys

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


@pytest.mark.slow
def test_multi_worker_mirrored_workers_finish_with_identical_weights(tmp_path):
  ports = th.free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  model_dir = str(tmp_path / "run")
  overrides = json.dumps(dict(model_dir=model_dir, train_steps=5, batch_size=4,
                              checkpoint_every_steps=5, g_attention_res=(),
                              d_attention_res=()))
  procs = []
  for i in range(2):
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
    cmd = [sys.executable, os.path.join(th.REPO, "tests", "train_worker.py"),
           str(tmp_path / f"worker{i}.npz"), overrides]
    procs.append(th.popen(cmd, str(tmp_path / f"worker{i}.txt"),
                          extra_env={"TF_CONFIG": tf_config, **th.ONE_THREAD}))
  try:
    for i, p in enumerate(procs):
      assert p.wait(timeout=600) == 0, (tmp_path / f"worker{i}.txt").read_text()[-3000:]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert "MultiWorkerMirroredStrategy" in (tmp_path / "worker0.txt").read_text()
  w0, w1 = (dict(np.load(tmp_path / f"worker{i}.npz")) for i in range(2))
  assert int(w0.pop("step")) == int(w1.pop("step")) == 5
  same_keys, diffs = th.max_differences(w0, w1)
  assert same_keys and max(diffs.values()) == 0.0, max(diffs.items(), key=lambda kv: kv[1])
  # The chief's checkpoint holds the same weights; the other worker's temporary one is gone.
  chief = th.read_checkpoint_tables(_latest(model_dir))
  assert max(float(np.max(np.abs(chief[k] - w0[k]))) for k in w0) == 0.0
  assert not os.path.exists(os.path.join(model_dir, ".worker1"))
