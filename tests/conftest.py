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


@pytest.fixture
def two_cpu_strategy():
  return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
