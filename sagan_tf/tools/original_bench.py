"""Time the original TF1 code's training iteration (`./run.sh bench --original_repo=PATH`).

    python -m sagan_tf.tools.original_bench --original_repo=PATH --config_json=FILE
        --out=RESULT.json

Run by bench.py in a process of its own (TF1 graph mode is process-wide, and
the row's peak memory is the process's). Builds the user's checkout of the
original (`compat/original_shim.py`) at the architecture and global batch of
the Config in FILE (`config.to_dict`, as bench merged it) the way the
original's `model.py` / `train_imagenet.py` wire it for training:

* z ~ N(0, 1) and the fake labels (multinomial over uniform logits) sampled
  in the graph at every run, as `utils_ori.make_z_normal` and `model.py` do;
* the real batch: one fixed batch of images uniform in [-1, 1] and labels,
  repeated by a one-shot `tf.data` iterator (the port's bench feeds the same
  kind of batch the same way; no input pipeline is timed);
* hinge losses (`model.py`'s functions), one `AdamOptimizer` per network
  (its flag defaults), `apply_gradients` under UPDATE_OPS (the batch norms'
  moving averages), a global-step increment;
* one iteration = `tfgan.gan_train`'s sequential train hooks with 1:1 steps:
  one `sess.run` each of the G train op, the D train op and the step
  increment; default session config (Grappler on), soft placement.

Timing protocol = the port's (bench.time_train_variant): one warm-up
iteration, then `bench_repeats` repeats of `bench_iters` iterations; median
seconds and process CPU seconds per iteration. FLOP per iteration are
counted from this graph's own G and D forward passes (train/flops.py's
rules), so they include the original's 1x1 shortcut after the upsampling
(the port computes it before: BUILD_NOTES.md, Speed).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import numpy as np

from sagan_tf import config as config_lib
from sagan_tf.compat import original_shim
from sagan_tf.errors import UserError
from sagan_tf.tools.make_fixture import original_training_graph
from sagan_tf.train import flops, memory

NAME = "original"


def _forward_flops(start_tensors, scope: str) -> int:
  """FLOP of the ops under name scope `scope` downstream of start_tensors (the
  data: weights and spectral-norm power iterations are not reached)."""
  starts = {t.op.name for t in start_tensors}
  return flops.downstream_flops([t.op for t in start_tensors],
                                keep=lambda op: op.name in starts or
                                op.name.startswith(scope + "/"))


def build(mods, cfg, seed: int = 0):
  """(graph, init op, [G train op, D train op, step increment], FLOP per iteration)."""
  import tensorflow as tf
  v1 = tf.compat.v1
  b, c, s = cfg.batch_size, cfg.num_classes, cfg.image_size
  rs = np.random.RandomState(seed)
  images = rs.uniform(-1, 1, (b, s, s, 3)).astype(np.float32)
  labels = rs.randint(0, c, size=b).astype(np.int32)
  graph = tf.Graph()
  with graph.as_default():
    v1.set_random_seed(seed)
    global_step = v1.train.get_or_create_global_step()
    real = v1.data.make_one_shot_iterator(
        tf.data.Dataset.from_tensors((images, labels)).repeat())
    x_real, y_real = real.get_next()
    x_real.set_shape([b, s, s, 3])
    z = v1.random_normal([b, cfg.z_dim], dtype=tf.float32, name="z")
    y_fake = tf.squeeze(v1.multinomial(tf.zeros([b, c]), 1), axis=1, name="y_fake")
    t = original_training_graph(mods, cfg, z, y_fake, x_real, y_real)
    d_train, g_train = t["d_train"], t["g_train_op"]
    increment = v1.assign_add(global_step, 1)
    f_g = _forward_flops([z, y_fake], "G_train")
    f_d = _forward_flops([x_real, y_real], "D_real")
    init = v1.global_variables_initializer()
  return graph, init, [g_train, d_train, increment], flops.iteration_flops(f_g, f_d, 1)


def time_original(original_repo: str, cfg, repeats: int, iters: int,
                  warmup_calls: int = 1) -> dict:
  """Builds and times the original's iteration; a dict of bench.VariantTiming's fields."""
  original_shim.disable_eager()
  import tensorflow as tf
  v1 = tf.compat.v1
  device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
  allocator = memory.allocator_device(device)
  memory.reset_peak(allocator)
  mods = original_shim.import_original(original_repo)
  graph, init, train_ops, flop = build(mods, cfg, cfg.seed)
  session_config = v1.ConfigProto(allow_soft_placement=True)
  with v1.Session(graph=graph, config=session_config) as sess:
    sess.run(init)

    def iteration():
      for op in train_ops:
        sess.run(op)

    t = time.perf_counter()
    for _ in range(warmup_calls):
      iteration()
    warmup = time.perf_counter() - t
    per_iter, cpu_per_iter = [], []
    for r in range(repeats):
      t, c = time.perf_counter(), time.process_time()
      for _ in range(iters):
        iteration()
      per_iter.append((time.perf_counter() - t) / iters)
      cpu_per_iter.append((time.process_time() - c) / iters)
      print(f"bench original: repeat {r + 1}/{repeats}: {per_iter[-1]:.3f} s/iteration.",
            file=sys.stderr, flush=True)
  seconds = statistics.median(per_iter)
  return {"name": NAME, "preset": cfg.preset, "batch": cfg.batch_size,
          "global_batch": cfg.batch_size, "seconds_per_iteration": seconds,
          "images_per_s": cfg.batch_size / seconds, "repeat_seconds": per_iter,
          "cpu_seconds_per_iteration": statistics.median(cpu_per_iter),
          "warmup_seconds": warmup, "iterations_per_repeat": iters,
          "flops_per_iteration": flop, "conv_gradients": "native (TF1 graph)",
          "tensor_peak_mb": memory.peak_mb(allocator), "device": device}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--original_repo", required=True)
  p.add_argument("--config_json", required=True, help="config.to_dict of the bench run")
  p.add_argument("--out", required=True, help="where the timing JSON goes")
  args = p.parse_args(argv)
  with open(args.config_json) as f:
    cfg = config_lib.from_dict(json.load(f))
  try:
    result = time_original(args.original_repo, cfg, cfg.bench_repeats, cfg.bench_iters)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  with open(args.out, "w") as f:
    json.dump(result, f)
  return 0


if __name__ == "__main__":
  sys.exit(main())
