"""Peak tensor memory of TensorFlow's allocator (bench's "tensor MiB" column).

TensorFlow counts the bytes its allocator hands out on a device: on a GPU
always, on the CPU when the pooling (BFC) allocator is on
(`TF_CPU_ALLOCATOR_USE_BFC=true`, which run.sh exports). The peak is of the
tensors (weights, optimiser slots, activations, gradients, temporaries), not
of the process (ru_maxrss adds TensorFlow's code, graphs, caches). Eager
functions and TF1 sessions of the process share the allocator.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf


def allocator_device(device_type: str) -> Optional[str]:
  """The device whose allocator holds a replica's tensors ('CPU:0', 'GPU:0'), or None."""
  return {"CPU": "CPU:0", "GPU": "GPU:0"}.get(device_type)


def reset_peak(device: Optional[str]) -> None:
  """Starts a new peak (no-op where the allocator keeps no statistics)."""
  if device:
    try:
      tf.config.experimental.reset_memory_stats(device)
    except (ValueError, RuntimeError, tf.errors.OpError):
      pass


def peak_mb(device: Optional[str]) -> Optional[float]:
  """MiB at the allocator's peak since the last reset_peak; None if not counted."""
  if not device:
    return None
  try:
    return tf.config.experimental.get_memory_info(device)["peak"] / 2 ** 20
  except (ValueError, RuntimeError, tf.errors.OpError):
    return None
