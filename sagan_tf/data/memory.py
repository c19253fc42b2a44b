"""How big a shuffle buffer this machine can hold.

The original shuffles 100,000 records; at 128x128 that is ~4.9 GB of host
memory per input pipeline, more than many machines have to spare, so the
buffer is capped at a fraction of the available memory (and the cap logged).
"""

from __future__ import annotations

import os

from absl import logging

# Share of available host memory one input pipeline's shuffle buffer may use.
# A quarter leaves room for the model, prefetch buffers and the pool of the
# embedded dataset.
MEMORY_FRACTION = 0.25


def available_memory_bytes() -> int:
  """Available host memory in bytes (MemAvailable, else total physical)."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    return 8 << 30  # unknown platform: assume a modest 8 GiB


def capped_shuffle_buffer(requested: int, bytes_per_example: int,
                          what: str = "records") -> int:
  """`requested`, or less if that many examples would not fit in memory.

  Args:
    requested: cfg.shuffle_buffer (examples).
    bytes_per_example: memory one buffered example takes.
    what: what is buffered, for the log line.
  Returns:
    A buffer size >= 1.
  """
  requested = max(1, int(requested))
  budget = int(available_memory_bytes() * MEMORY_FRACTION)
  limit = max(1, budget // max(1, bytes_per_example))
  if requested > limit:
    logging.info(
        "Shuffle buffer capped at %d %s (%.2f GB, %d%% of available memory) "
        "instead of --shuffle_buffer=%d.", limit, what,
        limit * bytes_per_example / 1e9, int(MEMORY_FRACTION * 100), requested)
    return limit
  return requested
