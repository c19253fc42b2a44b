"""Test session set-up: two logical CPU devices, quiet TF logs, repo on sys.path.

The CPU is split into 2 logical devices before TensorFlow initialises its
devices, so any test can build `tf.distribute.MirroredStrategy(["/cpu:0",
"/cpu:1"])` in-process; single-device code is unaffected (it uses /cpu:0).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

SHARED = os.path.join(os.path.dirname(ROOT), "shared")
PUBLIC_FIXTURE = os.path.join(SHARED, "parity", "public")
ORIGINAL = os.path.join(SHARED, "original")
# Tests that run the original code beside the port: it ships in ../shared (the
# reference material beside a checkout), not with the project.
needs_original = pytest.mark.skipif(
    not os.path.exists(os.path.join(ORIGINAL, "ops.py")),
    reason=f"original code not found at {ORIGINAL} (it ships in ../shared)")


@pytest.fixture(autouse=True)
def _own_collective_keys():
  """Every test's MirroredStrategy instances get collective group keys of their own.

  Each strategy numbers its collective groups and instances from the same
  start, and TensorFlow's collective executor keeps, per process, what each
  (group, instance) carried: a later strategy reusing an earlier one's keys
  for another dtype fails ("Collective instance 100 expected type 0 and
  data_type 1 but got ..."). TensorFlow's own tests set this class attribute
  for the same reason.
  """
  tf.distribute.MirroredStrategy._collective_key_base += 1000  # pylint: disable=protected-access


@pytest.fixture(autouse=True)
def _absl_info_logging():
  """absl logs at INFO in every test, as in a fresh process: a test that runs
  main (absl's app.run) leaves absl's verbosity where its flags put it, and
  later tests reading INFO lines through caplog would see none."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.INFO)


@pytest.fixture
def two_cpu_strategy():
  return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
