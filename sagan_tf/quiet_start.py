"""TensorFlow's start-up lines hidden unless asked for (one rule for every command).

TensorFlow's C++ side writes lines while it loads and probes the devices,
some before its log level applies, e.g. on a machine without a GPU
"E0000 ... cuda_platform.cc:52] failed call to cuInit", which reads like a
failure. `import_quietly` imports a module (and TensorFlow, and probes the
devices) with the process's stderr (fd 2) going to a temporary file, then
writes every other line of it to stderr. Verbose (TF_CPP_MIN_LOG_LEVEL=0,
what `--verbose` sets; spawned worker processes inherit it): a plain import.
Used by sagan_tf.main and the tfrecords_tools converters (and their workers).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile

STARTUP_LINE = re.compile(
    r"(WARNING: All log messages before absl::InitializeLog\(\) is called are written "
    r"to STDERR|[IWE]\d{4} [\d:. ]+\d+ (cudart_stub|cuda_platform|cuda_executor|cuda_dnn|"
    r"cuda_fft|cuda_blas|cuda_diagnostics|dso_loader|cpu_feature_guard|port)\.cc:\d+\]|"
    r"To enable the following instructions: .* rebuild TensorFlow with the appropriate)")


def set_verbose() -> None:
  """--verbose: TensorFlow logs everything, and import_quietly hides nothing."""
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"


def is_verbose() -> bool:
  return os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"


def import_quietly(module_name: str = "tensorflow"):
  """Imports module_name (then TensorFlow, then lists the devices: the CUDA
  probe) with TensorFlow's start-up lines dropped from stderr; returns the module."""
  if is_verbose():
    return importlib.import_module(module_name)
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      module = importlib.import_module(module_name)
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.config.list_physical_devices()  # the CUDA probe (does not fix the devices)
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      capture.seek(0)
      kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(True)
              if not STARTUP_LINE.match(line)]
      sys.stderr.write("".join(kept))
      sys.stderr.flush()
  return module
