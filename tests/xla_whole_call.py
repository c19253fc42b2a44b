"""Worker of test_tpu.py's XLA test: one call of 3 iterations compiled whole
(jit_compile=True, one CPU device, the loop inside XLA as on a TPU), the same
call as a CPU trains it (each iteration one XLA call, looped on the host) and
uncompiled, from the same initial weights and batches; prints one JSON line
of what the test asserts."""

import dataclasses
import json
import os
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_helpers as th  # noqa: E402  pylint: disable=wrong-import-position
from sagan_tf.train import setup, step  # noqa: E402  pylint: disable=wrong-import-position

CFG = th.tiny_config(steps_per_loop=3, d_steps=2, ema_decay=0.9, ema_start=1)
ROUNDING = 2e-5  # float32 rounding of 3 iterations, XLA's fusion against TF's kernels


def batches(cfg, count):
  rng = np.random.RandomState(7)
  images = rng.uniform(-1, 1, [count, cfg.batch_size, cfg.image_size, cfg.image_size, 3])
  labels = rng.randint(0, cfg.num_classes, [count, cfg.batch_size])
  return tf.data.Dataset.from_tensor_slices((images.astype(np.float32),
                                             labels.astype(np.int32)))


def weights(models):
  return {f"{name}/{v.path}": np.asarray(v.numpy(), np.float64)
          for name in ("generator", "discriminator", "ema_generator")
          for v in getattr(models, name).variables}


def trained(cfg, loop_in_xla=None):
  strategy = tf.distribute.get_strategy()
  models = setup.build_gan(cfg, strategy)
  step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
  train_fn = step.make_train_function(strategy, models, cfg, step_var, loop_in_xla)
  out = train_fn(iter(batches(cfg, cfg.steps_per_loop * cfg.d_steps)))
  assert bool(out["finite"]) and int(step_var.numpy()) == cfg.steps_per_loop
  return models, train_fn, step_var


def main():
  jit_cfg = dataclasses.replace(CFG, jit_compile=True)
  assert step.compiles_whole_call(tf.distribute.get_strategy(), jit_cfg)
  initial = weights(setup.build_gan(CFG))
  reference, _, _ = trained(CFG)
  models, train_fn, step_var = trained(jit_cfg, loop_in_xla=True)
  assert not step.loop_in_xla_by_default()  # a CPU: the host loops over compiled calls
  per_iteration, host_loop_fn, _ = trained(jit_cfg)
  host_graph = host_loop_fn.get_concrete_function(iter(batches(CFG, 1))).graph
  host_loop_hlo = host_loop_fn.compiled_call.experimental_get_compiler_ir(
      tf.zeros([CFG.d_steps, CFG.batch_size, CFG.image_size, CFG.image_size, 3]),
      tf.zeros([CFG.d_steps, CFG.batch_size], tf.int32), tf.constant(0, tf.int64))(stage="hlo")

  concrete = train_fn.get_concrete_function(iter(batches(CFG, 1)))
  ops = concrete.graph.get_operations()
  calls = [op for op in ops if op.type in ("StatefulPartitionedCall", "PartitionedCall")]
  library = {f.signature.name: f for f in concrete.graph.as_graph_def().library.function}
  fdef = library[calls[0].get_attr("f").name]
  n = CFG.steps_per_loop * CFG.d_steps
  hlo = train_fn.compiled_call.experimental_get_compiler_ir(
      tf.zeros([n, CFG.batch_size, CFG.image_size, CFG.image_size, 3]),
      tf.zeros([n, CFG.batch_size], tf.int32), tf.constant(0, tf.int64))(stage="hlo")
  entry = hlo[hlo.index("ENTRY"):].split("\n}", 1)[0]
  variables = (models.generator.variables + models.discriminator.variables +
               models.ema_generator.variables + models.g_optimizer.variables +
               models.d_optimizer.variables + [step_var])

  a, b, c = weights(reference), weights(models), weights(per_iteration)
  print(json.dumps({
      "host_ops": sorted({op.type for op in ops}),
      "calls": len(calls),
      "must_compile": bool(fdef.attr["_XlaMustCompile"].b),
      "hlo_while": " while(" in hlo,
      "hlo_parameters": entry.count("parameter("),
      "variables": len(variables),
      "variables_compared": len(a),
      "compared": len(b),
      "changed": sum(not np.array_equal(a[k], initial[k]) for k in a),
      "max_abs_diff": {k: float(np.max(np.abs(a[k] - b[k]))) for k in a},
      "elements": int(sum(a[k].size for k in a)),
      "beyond_rounding": {k: int(np.sum(np.abs(a[k] - b[k]) > ROUNDING)) for k in a},
      "host_loop_ops": sorted({op.type for op in host_graph.get_operations()}),
      "host_loop_hlo_while": " while(" in host_loop_hlo,
      "host_loop_max_abs_diff": {k: float(np.max(np.abs(a[k] - c[k]))) for k in a},
      "host_loop_beyond_rounding": {k: int(np.sum(np.abs(a[k] - c[k]) > ROUNDING))
                                    for k in a},
      "lr": max(CFG.lr_g, CFG.lr_d),
      "steps": CFG.steps_per_loop,
  }))


if __name__ == "__main__":
  main()
