"""Shared by the training tests: tiny configs and running `./run.sh train` in a subprocess."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from typing import Dict, List, Optional

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A SAGAN small enough to trace and run in seconds on one CPU core: 32x32,
# widths 8 (attention needs >= 8 channels at its resolution), 3 classes.
# Preset imagenet128 (overridden) rather than demo: the demo evaluates itself
# (--self_eval) at step 0 and at the end, which takes minutes.
PRESET = "imagenet128"
TINY = dict(gf_dim=8, df_dim=8, batch_size=4, image_size=32, num_classes=3,
            z_dim=16, precision="float32", ema_decay=0.0, dataset="shapes",
            g_attention_res=(16,), d_attention_res=(16,), train_steps=2,
            checkpoint_every_steps=1000, checkpoint_every_secs=0,
            sample_every_steps=1000, summary_every_steps=1, log_every_secs=0.0,
            keep_checkpoints=3)


def tiny_config(**overrides):
  from sagan_tf.config import Config  # pylint: disable=g-import-not-at-top
  fields = dict(TINY)
  fields.update(overrides)
  fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
  return dataclasses.replace(Config.preset(PRESET), **fields).validate()


def flag_args(**overrides) -> List[str]:
  """--flags for `python -m sagan_tf.main train` of tiny_config(**overrides)."""
  fields = dict(TINY)
  fields.update(overrides)
  out = [f"--preset={PRESET}"]
  for k, v in fields.items():
    if isinstance(v, (tuple, list)):
      v = ",".join(str(x) for x in v)
    elif isinstance(v, bool):
      v = "true" if v else "false"
    out.append(f"--{k}={v}")
  return out


def env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
  e = dict(os.environ)
  e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
  e.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  e.pop("TF_CONFIG", None)
  e.update(extra or {})
  return e


# For tests that run two training processes at once on a 2-core machine.
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


def train_command(*flags: str) -> List[str]:
  return [sys.executable, "-m", "sagan_tf.main", "train", *flags]


def popen(cmd: List[str], log_path: str, extra_env=None) -> subprocess.Popen:
  log = open(log_path, "wb")  # pylint: disable=consider-using-with
  return subprocess.Popen(cmd, cwd=REPO, env=env(extra_env), stdout=log,
                          stderr=subprocess.STDOUT)


def run(cmd: List[str], timeout: float = 600, extra_env=None) -> subprocess.CompletedProcess:
  return subprocess.run(cmd, cwd=REPO, env=env(extra_env), capture_output=True, text=True,
                        timeout=timeout, check=False)


def free_ports(n: int) -> List[int]:
  socks = []
  try:
    for _ in range(n):
      s = socket.socket()
      s.bind(("127.0.0.1", 0))
      socks.append(s)
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


def read_checkpoint_tables(path: str) -> Dict[str, np.ndarray]:
  """{"generator:model/...": value, "discriminator:...": value} of a training checkpoint."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.core.protobuf import trackable_object_graph_pb2  # pylint: disable=g-import-not-at-top
  reader = tf.compat.v1.train.NewCheckpointReader(path)
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
  out = {}
  for child in graph.nodes[0].children:
    if child.local_name not in ("generator", "discriminator", "ema_generator"):
      continue
    for leaf in graph.nodes[child.node_id].children:
      for attr in graph.nodes[leaf.node_id].attributes:
        if attr.name == "VARIABLE_VALUE":
          out[f"{child.local_name}:{leaf.local_name}"] = reader.get_tensor(attr.checkpoint_key)
  return out


def max_differences(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]):
  """(sorted keys equal?, {name: max |a - b|})."""
  diffs = {k: float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64))))
           for k in a if k in b}
  return sorted(a) == sorted(b), diffs
