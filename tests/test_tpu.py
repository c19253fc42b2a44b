"""The TPU path, checked on the CPU as closely as TensorFlow allows.

* TPUStrategy's argument rule (tests/tpu_contract.py): training, with the
  sample grid it writes, passes tensors only to `strategy.run`.
* The whole iteration under `jit_compile=True` on one device (the proxy for
  what TPUStrategy compiles): one XLA computation per call, the same weights
  as the uncompiled step.
* `--tpu` picks TPU-sized loops; a TPU that cannot be initialised says why.
"""

import functools
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

import train_helpers as th
from tpu_contract import TPUArgumentError, check_run_arguments, tpu_argument_rule


# --------------------------------------------------------------- the rule
def test_rule_rejects_what_tpustrategy_rejects_and_names_the_leaf(two_cpu_strategy):
  cfg = th.tiny_config()
  check_run_arguments((tf.zeros([2]), [(np.ones(3), 1)]), {"step": tf.constant(3)})
  with pytest.raises(TPUArgumentError, match=r"args\[1\]\[0\] is a .*partial"):
    check_run_arguments((tf.zeros([2]), [functools.partial(print)]))
  with pytest.raises(TPUArgumentError, match=r"kwargs\['cfg'\] is a sagan_tf.config.Config"):
    check_run_arguments((), {"cfg": cfg})
  # Patched into every strategy's run, undone afterwards.
  with tpu_argument_rule() as record:
    with pytest.raises(TPUArgumentError, match="args"):
      two_cpu_strategy.run(lambda c: 0, args=(cfg,))
    two_cpu_strategy.run(lambda x: x + 1, args=(tf.constant(1.0),))
    tf.distribute.get_strategy().run(lambda x: x, args=(tf.constant(1.0),))
  assert record.calls == ["<lambda>", "<lambda>"]
  two_cpu_strategy.run(lambda c: 0, args=(cfg,))  # MirroredStrategy forgives it again


@pytest.mark.slow
def test_training_and_its_samples_pass_tensors_only_to_strategy_run(tmp_path, two_cpu_strategy):
  from sagan_tf.train import loop
  cfg = th.tiny_config(model_dir=str(tmp_path / "run"), train_steps=4, steps_per_loop=2,
                       d_steps=2, ema_decay=0.9, sample_every_steps=2,
                       checkpoint_every_steps=2)
  with tpu_argument_rule() as record:
    trainer = loop.Trainer(cfg, two_cpu_strategy)
    assert trainer.run() == 0
  assert int(trainer.step_var.numpy()) == 4
  # The replica iteration (G step, D steps, EMA) and the sample grid's generator.
  assert "replica_fn" in record.calls and "sample_replica" in record.calls, record.calls
  assert os.path.exists(os.path.join(cfg.model_dir, "samples"))


# ------------------------------------------------------- XLA, whole call
@pytest.mark.slow
def test_whole_iteration_compiles_as_one_xla_call_with_the_uncompiled_weights():
  """3 iterations (steps_per_loop 3, d_steps 2, EMA on) as ONE XLA computation
  on one CPU device equal the uncompiled step. In a subprocess: XLA's CPU
  optimisations only cost compile time here (XLA_FLAGS, read once per process)."""
  import json
  result = th.run([sys.executable, os.path.join(th.REPO, "tests", "xla_whole_call.py")],
                  timeout=1500,
                  extra_env={"XLA_FLAGS": "--xla_backend_optimization_level=0"})
  assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  # Everything that changes state is inside the one XLA function: the host
  # graph holds no assignment, optimiser or model op, and the one call it
  # makes is marked must-compile (XLA or an error, never a silent fallback).
  assert set(out["host_ops"]) <= HOST_OPS, set(out["host_ops"]) - HOST_OPS
  assert out["calls"] == 1 and out["must_compile"]
  # XLA compiled it: the loop is an HLO while whose state carries every
  # variable (G, D, EMA, both Adams, u, moving statistics, the step).
  assert out["hlo_while"] and out["hlo_parameters"] >= out["variables"] > 100
  # The iterations trained, and the compiled run equals the uncompiled one:
  # z is XLA-consistent (step.standard_normal), so the weights agree to float32
  # rounding (2e-5), except where a gradient IS rounding noise (a conv bias
  # feeding a batch norm has gradient 0 in exact arithmetic): Adam with
  # beta1 = 0 moves a weight by +-lr per step with its gradient's sign, so such
  # a weight may differ by up to 2 * lr * steps. Those are a handful.
  assert out["changed"] > out["compared"] // 2, out
  assert out["compared"] == out["variables_compared"]
  beyond = {k: v for k, v in out["beyond_rounding"].items() if v}
  assert sum(beyond.values()) <= out["elements"] // 1000, beyond
  worst = max(out["max_abs_diff"].values())
  assert worst <= 2 * out["lr"] * out["steps"], sorted(out["max_abs_diff"].items(),
                                                       key=lambda kv: -kv[1])[:5]
  # As a CPU trains it (step.loop_in_xla_by_default: XLA:CPU's convolutions in
  # a compiled loop are slow): the host loops (a While op) over an XLA call of
  # one iteration (no HLO while), and the weights are the same to rounding.
  assert any("While" in op for op in out["host_loop_ops"]) and not out["host_loop_hlo_while"]
  beyond = {k: v for k, v in out["host_loop_beyond_rounding"].items() if v}
  assert sum(beyond.values()) <= out["elements"] // 1000, beyond
  assert max(out["host_loop_max_abs_diff"].values()) <= 2 * out["lr"] * out["steps"]


# Graph ops the host part of a whole-call-compiled train function may hold:
# taking and stacking the batches, reading the step, calling the XLA function.
HOST_OPS = {"Placeholder", "IteratorGetNext", "Pack", "Cast", "ReadVariableOp", "Identity",
            "NoOp", "Const", "StatefulPartitionedCall", "PartitionedCall"}


# ------------------------------------------------------ TPU configuration
def test_tpu_defaults_to_tpu_sized_loops_unless_steps_per_loop_is_typed():
  from absl import flags
  from sagan_tf import config
  for argv, want in ((["--tpu=local"], config.TPU_STEPS_PER_LOOP),
                     (["--tpu=local", "--steps_per_loop=7"], 7),
                     ([], config.Config.preset("imagenet128").steps_per_loop)):
    fv = flags.FlagValues()
    config.define_flags(fv)
    fv(["prog", "--preset=imagenet128", *argv])
    invocation = config.from_flags(fv, "train")
    assert config.merge("train", invocation.config, invocation.typed).steps_per_loop == want, argv


def test_tpu_errors_tell_missing_tpu_support_from_an_unreachable_tpu(monkeypatch):
  from sagan_tf.errors import UserError
  from sagan_tf import strategy
  supported, what = strategy.tpu_support()
  assert not supported and what == f"tensorflow {tf.__version__}"  # the plain wheel here
  with pytest.raises(UserError, match=r"this TensorFlow \(tensorflow 2\.\d+\.\d+\) has no TPU "
                     r"support.*tensorflow-tpu 2\.20\.0.*requirements-tpu\.txt"):
    strategy._tpu_strategy("local")  # pylint: disable=protected-access

  def unreachable(tpu):
    raise ValueError(f"Could not lookup TPU metadata from name '{tpu}'.")

  monkeypatch.setattr(strategy, "tpu_support", lambda: (True, "tensorflow_tpu 2.20.0"))
  monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", unreachable)
  with pytest.raises(UserError, match=r"No TPU named 'my-tpu' is reachable with tensorflow_tpu "
                     r"2\.20\.0 \(Could not lookup.*check the name, zone and project"):
    strategy._tpu_strategy("my-tpu")  # pylint: disable=protected-access
