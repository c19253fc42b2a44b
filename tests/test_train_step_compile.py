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
