"""The training step compiles with XLA (jit_compile=True, the proxy here for a
TPU) in bfloat16 with the EMA on, and its losses are finite."""

import re

import numpy as np
import pytest

import train_helpers as th


@pytest.mark.slow
def test_step_compiles_with_jit_in_bfloat16_and_losses_are_finite(tmp_path):
  model_dir = str(tmp_path / "run")
  flags = th.flag_args(model_dir=model_dir, jit_compile=True, precision="bfloat16",
                       ema_decay=0.99, train_steps=2)
  # XLA's CPU backend optimisations only cost compile time here (~2x).
  result = th.run(th.train_command(*flags), timeout=900,
                  extra_env={"XLA_FLAGS": "--xla_backend_optimization_level=0"})
  log = result.stdout + result.stderr
  assert result.returncode == 0, log[-3000:]
  assert "precision bfloat16; XLA" in log
  losses = re.findall(r"step 2/2  d_loss (\S+) \(real (\S+), fake (\S+)\)  g_loss (\S+)", log)
  assert losses, log[-2000:]
  assert all(np.isfinite(float(v)) for v in losses[-1])


def test_training_warns_of_an_xla_loop_on_a_cpu_only_where_it_compiles_one():
  """XLA:CPU's convolutions inside a compiled loop are ~100x slower (step.py):
  the predicate behind training's warning holds only for a CPU with one device,
  --jit_compile and steps_per_loop > 1."""
  import dataclasses
  import tensorflow as tf
  from sagan_tf.train import step
  default = tf.distribute.get_strategy()
  cfg = th.tiny_config(jit_compile=True, steps_per_loop=3)
  assert step.slow_xla_loop_on_cpu(default, cfg)
  assert not step.slow_xla_loop_on_cpu(default, dataclasses.replace(cfg, steps_per_loop=1))
  assert not step.slow_xla_loop_on_cpu(default, dataclasses.replace(cfg, jit_compile=False))
  # MirroredStrategy compiles only the gradient functions, never the loop.
  mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
  assert not step.slow_xla_loop_on_cpu(mirrored, cfg)
