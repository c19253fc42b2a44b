"""Which tf.distribute strategy a run uses: one function, `make_strategy(cfg)`.

In order of precedence:
  --tpu=NAME | local   TPUClusterResolver -> connect -> initialise -> TPUStrategy
  TF_CONFIG set        MultiWorkerMirroredStrategy (one process per worker)
  --num_cpu_devices=N  (N > 1) the CPU split into N logical devices, MirroredStrategy
                       over them: multi-replica behaviour on any machine (tests)
  > 1 GPU              MirroredStrategy over all GPUs
  otherwise            the default strategy (one device)

`--num_cpu_devices` is an explicit request, so it wins over the GPU count.
Logical devices can only be configured before TensorFlow initialises its
devices (the first op, tensor or device listing does that), so call
`make_strategy` first thing in a process, before building anything.

The global batch (`--batch_size`) is split evenly over the replicas;
`cfg.per_replica_batch(strategy.num_replicas_in_sync)` raises the clear error
when it does not divide, and `make_strategy` checks it.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Tuple

from absl import logging
import tensorflow as tf

from sagan_tf import platform_info
from sagan_tf.errors import UserError


def make_strategy(cfg, check_batch: bool = True) -> tf.distribute.Strategy:
  """The strategy for cfg (see the module docstring); logs the choice.

  check_batch: check that --batch_size divides over the replicas (training);
  evaluation pads its batches instead.

  Raises:
    UserError: unreachable TPU, malformed TF_CONFIG, logical CPU devices
      requested after TensorFlow initialised its devices, or a global batch
      not divisible by the replica count.
  """
  if cfg.tpu:
    strategy, what = _tpu_strategy(cfg.tpu), f"TPUStrategy ({cfg.tpu})"
  elif os.environ.get("TF_CONFIG"):
    strategy, what = _multi_worker_strategy(), "MultiWorkerMirroredStrategy (TF_CONFIG)"
    if cfg.num_cpu_devices > 1:
      logging.warning("--num_cpu_devices=%d is ignored under TF_CONFIG (one replica "
                      "per worker on CPU).", cfg.num_cpu_devices)
  elif cfg.num_cpu_devices > 1:
    devices = _split_cpu(cfg.num_cpu_devices)
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    what = f"MirroredStrategy over {len(devices)} logical CPU devices"
  elif len(tf.config.list_physical_devices("GPU")) > 1:
    strategy, what = tf.distribute.MirroredStrategy(), "MirroredStrategy over the GPUs"
  else:
    strategy = tf.distribute.get_strategy()
    gpus = tf.config.list_physical_devices("GPU")
    what = f"default strategy ({'GPU' if gpus else 'CPU'})"
  n = strategy.num_replicas_in_sync
  if not check_batch:
    logging.info("Distribution: %s, %d replica(s).", what, n)
    return strategy
  per_replica = cfg.per_replica_batch(n)  # the clear error when it does not divide
  logging.info("Distribution: %s, %d replica(s), global batch %d = %d per replica.",
               what, n, cfg.batch_size, per_replica)
  return strategy


INSTALL_TPU = ("./run.sh --tpu=... on a Cloud TPU VM sets it up (README, \"Cloud TPU\"); by "
               "hand: pip install -r requirements-tpu.txt && pip install --no-deps -r "
               "requirements-tpu-nodeps.txt")


def tpu_support() -> Tuple[bool, str]:
  """(whether this TensorFlow can drive a TPU, which TensorFlow it is).

  The TPU build is the `tensorflow-tpu` distribution, or a TensorFlow beside
  a libtpu (a Cloud TPU VM's preinstalled one); the plain `tensorflow`
  wheel has no TPU kernels (ConfigureDistributedTPU is not registered).
  """
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  dists = importlib.metadata.packages_distributions().get("tensorflow", [])
  what = f"{'+'.join(sorted(set(dists))) or 'tensorflow'} {tf.__version__}"
  libtpu = bool(importlib.util.find_spec("libtpu") or os.environ.get("TPU_LIBRARY_PATH"))
  tpu_dist = any(d.replace("_", "-").lower() == "tensorflow-tpu" for d in dists)
  return tpu_dist or libtpu, what


def _tpu_strategy(name: str) -> tf.distribute.TPUStrategy:
  supported, what = tpu_support()
  no_support = (f"--tpu={name}: this TensorFlow ({what}) has no TPU support; Cloud TPU "
                f"needs TensorFlow's TPU build (tensorflow-tpu 2.20.0 with its libtpu, or "
                f"the TensorFlow preinstalled on a tpu-vm-tf-* runtime): {INSTALL_TPU}. "
                "Or leave --tpu empty to train without a TPU.")
  if not supported:
    raise UserError(no_support)
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except Exception as e:  # pylint: disable=broad-except
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    if "ConfigureDistributedTPU" in str(e):  # no TPU kernels after all
      raise UserError(f"{no_support} ({reason})") from e
    # The resolver fails with URLError / ValueError / OpError depending on
    # where the lookup stops; they all mean "no such TPU here".
    where = ("this machine has no TPU, or another process holds it" if name == "local"
             else "check the name, zone and project (gcloud compute tpus list)")
    raise UserError(f"No TPU named {name!r} is reachable with {what} ({reason}); {where}; "
                    "use --tpu=local on a TPU VM, or leave --tpu empty to train without a "
                    "TPU.") from e
  return tf.distribute.TPUStrategy(resolver)


def _multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
  raw = os.environ["TF_CONFIG"]
  try:
    tf_config = json.loads(raw)
    _ = tf_config["cluster"], tf_config["task"]["type"], tf_config["task"]["index"]
  except (ValueError, KeyError, TypeError) as e:
    raise UserError(f"TF_CONFIG={raw!r} is not a valid cluster description (need JSON "
                    "with 'cluster' and 'task': {'type', 'index'}); fix or unset it.") from e
  return tf.distribute.MultiWorkerMirroredStrategy()


def _split_cpu(n: int):
  """Splits the (first) physical CPU into n logical devices; returns their names."""
  cpus = tf.config.list_physical_devices("CPU")
  config = [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
  try:
    tf.config.set_logical_device_configuration(cpus[0], config)
  except RuntimeError as e:
    # Already initialised: fine if it already has the requested split.
    if len(tf.config.list_logical_devices("CPU")) != n:
      raise UserError(f"--num_cpu_devices={n} must be applied before TensorFlow "
                      "initialises its devices; run it in a fresh process (the "
                      "training command does).") from e
  return [d.name for d in tf.config.list_logical_devices("CPU")][:n]


def cpu_backend(cfg) -> Optional[str]:
  """The CPU kernels make_strategy(cfg)'s replicas run: "eigen" (oneDNN off)
  or "onednn"; None when they are TPUs (--tpu) or GPUs (visible, and no
  --num_cpu_devices split, which TF_CONFIG overrides). Safe before
  make_strategy: it lists physical devices only."""
  if cfg.tpu:
    return None
  cpu_split = cfg.num_cpu_devices > 1 and not os.environ.get("TF_CONFIG")
  if not cpu_split and tf.config.list_physical_devices("GPU"):
    return None
  return "onednn" if platform_info.onednn_enabled() else "eigen"


def worker_info(strategy) -> Tuple[int, int, bool]:
  """(task id, number of workers, is chief) of this process under strategy.

  Only MultiWorkerMirroredStrategy has more than one worker process here
  (TPUStrategy is driven by a single host process).
  """
  resolver = getattr(strategy, "cluster_resolver", None)
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
    return 0, 1, True
  spec = resolver.cluster_spec().as_dict()
  num_workers = len(spec.get("worker", [])) + len(spec.get("chief", []))
  task_type, task_id = resolver.task_type, resolver.task_id or 0
  is_chief = (task_type == "chief" or
              (task_type == "worker" and task_id == 0 and "chief" not in spec) or
              task_type is None)
  return int(task_id), max(1, num_workers), is_chief
