"""`./run.sh bench`: how fast the training iteration (and input, eval) runs.

  ./run.sh bench                          imagenet128 architecture, batch 8 per replica,
                                          float32 and float32+xla (+ bfloat16 on a CPU
                                          with bf16 hardware)
  ./run.sh bench --bench_variants=all     ... every variant (many minutes on a CPU)
  ./run.sh bench --preset=demo            the embedded demo at its own batch (16), all variants
  ./run.sh bench --bench_variants=float32,bfloat16 --bench_repeats=5
  ./run.sh bench --json=/tmp/bench.json   also write the results as JSON
  ./run.sh bench --original_repo=PATH     ... and the original TF1 code's iteration beside
                                          them (PATH: brain-research/self-attention-gan
                                          at ad9612e), ratios to it, each row's peak memory
  ./run.sh bench --what=input             input pipeline images/s
  ./run.sh bench --what=eval              generator + classifier samples/s

`--what=train` (default) times the full training iteration exactly as the
training loop runs it: `step.make_train_function` (G step, then D step) over
a distributed iterator of one in-memory batch repeated
(`tf.data.Dataset.from_tensors(batch).repeat()`). Each variant is built from
scratch (models, optimisers, compiled function), warmed up (tracing,
Grappler, XLA, oneDNN primitive creation), then timed over `--bench_repeats`
repeats of `--bench_iters` iterations; the table gives the median seconds
per iteration, images/s (global batch / seconds), the ratio of images/s
to the first variant measured in the same process, the FLOP rate and its
share of the CPU's estimated peak, and which convolution gradients the
kernel policy chose (layers/fast_conv.py). Above the table: the CPU model
and kind (AVX2 / AVX-512 / AVX-512+AMX, bf16 hardware, oneDNN on or off;
platform_info.py) and the peak estimate (cores x clock x FLOP/cycle of the
kind and precision: an upper bound, not a measurement). Every variant runs in
this one process, one after the other, with the models freed in between;
the Keras dtype policy is per model and XLA per tf.function, so nothing
leaks from one variant into the next.

Variant names: a precision (`float32` | `bfloat16`), optionally `+xla`
(cfg.jit_compile) and `+splN` (cfg.steps_per_loop = N, N iterations per
call of the compiled function). `--bench_variants=all` = float32, bfloat16,
float32+xla, bfloat16+xla, float32+spl10. A `+splN` repeat runs
ceil(bench_iters / N) calls, so at least N iterations.

Defaults (each only when its flag is not given; config.MODE_PRESETS and
config.CONTEXT_DEFAULTS, applied by config.merge):
  * `--preset`: imagenet128 (the architecture the speed targets are about);
  * imagenet presets: per-replica batch 8 (their 256 is a TPU-pod batch),
    variants float32,float32+xla (and bfloat16 where the CPU has bf16
    hardware: AVX512_BF16 or AMX) and 1 iteration per repeat, which keeps
    `./run.sh bench` near 5 minutes on a quiet 2-core CPU (one iteration is
    ~1.2 TFLOP; every other variant adds minutes: use --bench_variants=all);
  * other presets (demo): their own batch, all variants, --bench_iters.

`--original_repo=PATH`: the first row is the original code's training
iteration at the same architecture and global batch (tools/original_bench.py:
its model files through compat/original_shim.py, wired as its model.py and
train_imagenet.py train: one session run each of the G train op, the D train
op and the step increment; the same warm-up / repeats protocol), the ratio
column becomes "x original", and every row (the original and each variant)
runs in a process of its own, so the "peak MiB" column is that row's own
peak resident memory (ru_maxrss), not the maximum over the rows. Without
the flag nothing of the original is imported.

The machine is usually shared: the table also gives the process CPU time
per iteration (steadier than wall time under load), the load average and a
same-process float32 matmul rate, so that runs under different load can be
put side by side, and the process's peak resident memory. BUILD_NOTES.md,
section Speed, has the profile of the iteration and what was changed
because of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from absl import logging
import keras
import tensorflow as tf

from sagan_tf import config as config_lib
from sagan_tf import data
from sagan_tf import platform_info
from sagan_tf.compat import original_shim
from sagan_tf.data import bench_input
from sagan_tf.errors import UserError
from sagan_tf.eval import classifiers
from sagan_tf.eval import run as eval_run
from sagan_tf.layers import fast_conv
from sagan_tf.models.generator import build_generator
from sagan_tf.train import flops, memory, setup
from sagan_tf.train import step as step_lib
from sagan_tf.strategy import cpu_backend, make_strategy
from sagan_tf.tools import make_fixture, original_bench

ALL_TRAIN_VARIANTS = ("float32", "bfloat16", "float32+xla", "bfloat16+xla", "float32+spl10")
ORIGINAL = original_bench.NAME   # the row of the original code (--original_repo)
DEFAULT_TRAIN_VARIANTS = ALL_TRAIN_VARIANTS


def large_default_variants(info=None) -> str:
  """The imagenet presets' default variants on this CPU (info: platform_info.CpuInfo)."""
  return config_lib.bench_large_variants((info or platform_info.cpu_info()).bf16_hardware)


# ------------------------------------------------------------------ variants
@dataclasses.dataclass(frozen=True)
class Variant:
  """One way of running the iteration: precision, XLA, iterations per call."""
  name: str
  precision: str
  jit_compile: bool = False
  steps_per_loop: int = 1

  def apply(self, cfg):
    return dataclasses.replace(cfg, precision=self.precision, jit_compile=self.jit_compile,
                               steps_per_loop=self.steps_per_loop)


def parse_variant(name: str) -> Variant:
  """'bfloat16+xla+spl10' -> Variant; UserError naming the bad part."""
  parts = [p.strip() for p in name.strip().split("+")]
  if not parts or parts[0] not in config_lib.PRECISIONS:
    raise UserError(f"bench variant {name!r} must start with a precision "
                    f"({', '.join(config_lib.PRECISIONS)}), e.g. float32+xla.")
  jit, spl = False, 1
  for p in parts[1:]:
    if p == "xla":
      jit = True
    elif p.startswith("spl") and p[3:].isdigit() and int(p[3:]) >= 1:
      spl = int(p[3:])
    else:
      raise UserError(f"bench variant {name!r}: unknown part {p!r}; use +xla and/or "
                      "+splN (N iterations per call), e.g. bfloat16+xla+spl10.")
  return Variant(name=name.strip(), precision=parts[0], jit_compile=jit, steps_per_loop=spl)


def parse_variants(spec: str, default: Sequence[str] = DEFAULT_TRAIN_VARIANTS) -> List[Variant]:
  """'float32,float32+xla' -> Variants; empty = `default`, 'all' = every listed variant."""
  if (spec or "").strip() == "all":
    spec = ",".join(ALL_TRAIN_VARIANTS)
  names = [s for s in (spec or "").split(",") if s.strip()] or list(default)
  variants = [parse_variant(n) for n in names]
  seen = set()
  for v in variants:
    if v.name in seen:
      raise UserError(f"bench variant {v.name!r} is listed twice in --bench_variants.")
    seen.add(v.name)
  return variants


# ------------------------------------------------------------------ results
@dataclasses.dataclass
class VariantTiming:
  """Timing of one variant. `ratio` = images_per_s / the first variant's."""
  name: str
  preset: str
  batch: int                      # per-replica batch
  global_batch: int
  seconds_per_iteration: float    # median over repeats
  images_per_s: float             # global batch / seconds_per_iteration
  repeat_seconds: List[float]     # seconds per iteration of every repeat
  cpu_seconds_per_iteration: float  # median process CPU time (all threads) per iteration
  warmup_seconds: float           # first call(s): tracing + compiling
  iterations_per_repeat: int
  flops_per_iteration: int = 0    # train/flops.py: convolutions and matmuls, all replicas
  conv_gradients: str = ""        # which conv gradient kernels the policy chose
  peak_flops: Optional[float] = None  # estimated peak of this CPU at the precision
  ratio: float = 1.0
  peak_rss_mb: Optional[float] = None  # peak resident memory of the row's own process
  tensor_peak_mb: Optional[float] = None  # TF allocator's peak during the row (train/memory.py)

  @property
  def flops_per_s(self) -> float:
    return self.flops_per_iteration / self.seconds_per_iteration

  @property
  def share_of_peak(self) -> Optional[float]:
    """Achieved FLOP/s / estimated peak FLOP/s (None when the peak is unknown)."""
    return self.flops_per_s / self.peak_flops if self.peak_flops else None

  def to_json(self) -> Dict[str, object]:
    return {"name": self.name, "preset": self.preset, "batch": self.batch,
            "global_batch": self.global_batch,
            "seconds_per_iteration": self.seconds_per_iteration,
            "images_per_s": self.images_per_s, "ratio_to_first": self.ratio,
            "cpu_seconds_per_iteration": self.cpu_seconds_per_iteration,
            "repeat_seconds_per_iteration": self.repeat_seconds,
            "iterations_per_repeat": self.iterations_per_repeat,
            "warmup_seconds": self.warmup_seconds,
            "flops_per_iteration": self.flops_per_iteration,
            "gflops_per_s": self.flops_per_s / 1e9, "conv_gradients": self.conv_gradients,
            "peak_gflops_estimate": self.peak_flops / 1e9 if self.peak_flops else None,
            "share_of_peak": self.share_of_peak, "peak_rss_mb": self.peak_rss_mb,
            "tensor_peak_mb": self.tensor_peak_mb}


def set_ratios(results: List[VariantTiming]) -> None:
  """ratio of every result = its images/s / the first result's."""
  if results:
    first = results[0].images_per_s
    for r in results:
      r.ratio = r.images_per_s / first if first > 0 else float("nan")


def peak_rss_mb() -> float:
  """Peak resident memory of this process (ru_maxrss is KiB on Linux)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_average() -> str:
  try:
    return "%.2f %.2f %.2f" % os.getloadavg()
  except OSError:
    return "n/a"


def matmul_gflops(n: int = 1024, reps: int = 9) -> float:
  """Median float32 matmul rate of this process now: a yardstick for the load."""
  a = tf.random.stateless_normal([n, n], seed=[1, 2])
  fn = tf.function(lambda x: tf.matmul(x, x))
  fn(a).numpy()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn(a).numpy()
    times.append(time.perf_counter() - t)
  return 2.0 * n ** 3 / statistics.median(times) / 1e9


# ------------------------------------------------------------------ train
def _real_batch(cfg, per_replica: int, seed: int = 0):
  """A fixed 'real' batch: images uniform in [-1, 1] float32, int32 labels."""
  s = cfg.image_size
  images = tf.random.stateless_uniform([per_replica, s, s, 3], seed=[seed, 1],
                                       minval=-1.0, maxval=1.0)
  labels = tf.random.stateless_uniform([per_replica], seed=[seed, 2], minval=0,
                                       maxval=cfg.num_classes, dtype=tf.int32)
  return images, labels


def time_train_variant(cfg, variant: Variant, strategy, repeats: int, iters: int,
                       warmup_calls: Optional[int] = None) -> VariantTiming:
  """Builds the GAN for `variant`, warms up, times; frees everything after."""

  vcfg = variant.apply(cfg)
  n = strategy.num_replicas_in_sync
  per_replica = vcfg.per_replica_batch(n)
  spl = vcfg.steps_per_loop
  calls = max(1, math.ceil(iters / spl))
  if warmup_calls is None:
    # One call traces, optimises / compiles and runs once; after it the
    # iteration time is steady (checked at imagenet128; BUILD_NOTES.md, Speed).
    warmup_calls = 1

  allocator = memory.allocator_device(device_type(strategy))
  memory.reset_peak(allocator)
  models = setup.build_gan(vcfg, strategy)
  flop = iteration_flops(models, vcfg, per_replica, n)
  with strategy.scope():
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
  batch = _real_batch(vcfg, per_replica)
  dataset = strategy.distribute_datasets_from_function(
      lambda _: tf.data.Dataset.from_tensors(batch).repeat())
  iterator = iter(dataset)
  train_fn = step_lib.make_train_function(strategy, models, vcfg, step_var)

  def call():
    out = train_fn(iterator)
    if not bool(out["finite"]):
      logging.warning("bench %s: a loss was not finite (random data; timing is still valid).",
                      variant.name)

  t = time.perf_counter()
  for _ in range(warmup_calls):
    call()
  warmup = time.perf_counter() - t
  logging.info("bench %s: warm-up (%d call(s) of %d iteration(s)) %.1f s.", variant.name,
               warmup_calls, spl, warmup)
  per_iter, cpu_per_iter = [], []
  for r in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    for _ in range(calls):
      call()
    per_iter.append((time.perf_counter() - t) / (calls * spl))
    cpu_per_iter.append((time.process_time() - c) / (calls * spl))
    logging.info("bench %s: repeat %d/%d: %.3f s/iteration.", variant.name, r + 1, repeats,
                 per_iter[-1])
  seconds = statistics.median(per_iter)
  global_batch = per_replica * n
  result = VariantTiming(name=variant.name, preset=cfg.preset, batch=per_replica,
                  global_batch=global_batch, seconds_per_iteration=seconds,
                  images_per_s=global_batch / seconds, repeat_seconds=per_iter,
                  cpu_seconds_per_iteration=statistics.median(cpu_per_iter),
                  warmup_seconds=warmup, iterations_per_repeat=calls * spl,
                  flops_per_iteration=flop, tensor_peak_mb=memory.peak_mb(allocator),
                  **platform_columns(vcfg, strategy))
  del train_fn, iterator, dataset, models, step_var, batch
  gc.collect()
  keras.backend.clear_session()
  gc.collect()
  return result


def iteration_flops(models, cfg, per_replica: int, num_replicas: int) -> int:
  """train/flops.py's count for the built models (0, logged, when it cannot count)."""
  try:
    return flops.train_iteration_flops(models.generator, models.discriminator, cfg,
                                       per_replica, num_replicas)
  except (ValueError, TypeError) as e:
    logging.warning("bench: no FLOP count (%s); the share of peak is left out.", e)
    return 0


def device_type(strategy) -> str:
  """'CPU', 'GPU' or 'TPU': where the strategy's replicas run."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    device = strategy.extended.worker_devices[0]
  except (RuntimeError, AttributeError, IndexError):   # the default strategy
    return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
  kind = tf.DeviceSpec.from_string(device).device_type or "CPU"
  return "TPU" if kind.startswith("TPU") else kind


def platform_columns(cfg, strategy) -> Dict[str, object]:
  """conv_gradients (the kernel policy's choice for cfg here) and peak_flops
  (CPU replicas only: the estimate of platform_info)."""
  kind = device_type(strategy)
  onednn = kind == "CPU" and platform_info.onednn_enabled()
  forward = fast_conv.use_forward_ops(cfg.conv_gradients, kind, onednn, cfg.jit_compile)
  peak = platform_info.cpu_info().peak_flops(cfg.precision) if kind == "CPU" else None
  return {"conv_gradients": "forward ops" if forward else "native", "peak_flops": peak}


def run_train_benchmark(cfg, variants: Sequence[Variant], strategy=None,
                        repeats: Optional[int] = None,
                        iters: Optional[int] = None) -> List[VariantTiming]:
  """Times every variant in this process, in order; ratios against the first."""
  strategy = strategy or tf.distribute.get_strategy()
  repeats = cfg.bench_repeats if repeats is None else repeats
  iters = cfg.bench_iters if iters is None else iters
  if repeats < 1 or iters < 1:
    raise UserError(f"--bench_repeats={repeats} and --bench_iters={iters} must be >= 1.")
  results = []
  for v in variants:
    logging.info("bench: %s, preset %s, per-replica batch %d.", v.name, cfg.preset,
                 cfg.per_replica_batch(strategy.num_replicas_in_sync))
    results.append(time_train_variant(cfg, v, strategy, repeats, iters))
    set_ratios(results)
  return results


def format_table(results: Sequence[VariantTiming]) -> str:
  """The results as aligned text; 'x original' when the first row is the original's,
  a 'peak MiB' column when the rows ran in processes of their own."""
  first = "x original" if results and results[0].name == ORIGINAL else "x first"
  with_rss = any(r.peak_rss_mb is not None for r in results)
  rows = [("variant", "preset", "batch", "s/iter", "images/s", first, "GFLOP/s", "% peak",
           "conv grads", "repeats (s/iter)", "warm-up s", "cpu s/iter", "tensor MiB") +
          (("peak MiB",) if with_rss else ())]
  for r in results:
    share = r.share_of_peak
    rows.append((r.name, r.preset, str(r.batch), f"{r.seconds_per_iteration:.3f}",
                 f"{r.images_per_s:.2f}", f"{r.ratio:.2f}",
                 f"{r.flops_per_s / 1e9:.1f}" if r.flops_per_iteration else "n/a",
                 f"{100 * share:.0f}%" if share is not None else "n/a", r.conv_gradients,
                 " ".join(f"{s:.3f}" for s in r.repeat_seconds), f"{r.warmup_seconds:.1f}",
                 f"{r.cpu_seconds_per_iteration:.2f}",
                 f"{r.tensor_peak_mb:.0f}" if r.tensor_peak_mb is not None else "n/a") +
                ((f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb is not None else "n/a",)
                 if with_rss else ()))
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = ["  ".join(c.ljust(w) if i in (0, 1, 8, 9) else c.rjust(w)
                     for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def write_json(path: str, results: Sequence[VariantTiming], extra: Dict[str, object]) -> None:
  payload = dict(extra, variants=[r.to_json() for r in results])
  directory = os.path.dirname(path)
  if directory:
    tf.io.gfile.makedirs(directory)
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(json.dumps(payload, indent=1) + "\n")


# ------------------------------------------------------------------ modes
def platform_header(info=None, onednn: Optional[bool] = None) -> str:
  """The CPU lines above the table: model, kind, oneDNN, and the peak estimate."""
  info = info or platform_info.cpu_info()
  onednn = platform_info.onednn_enabled() if onednn is None else onednn
  lines = [platform_info.describe(info, onednn)]
  peaks = []
  for precision in config_lib.PRECISIONS:
    peak = info.peak_flops(precision)
    if peak:
      peaks.append(f"{precision} {info.physical_cores} x {info.mhz / 1000:.2f} GHz x "
                   f"{info.flop_per_cycle(precision)} FLOP/cycle = {peak / 1e9:.0f} GFLOP/s")
  lines.append("peak estimate (cores x clock x FLOP/cycle for the kind, an upper bound): " +
               ("; ".join(peaks) if peaks else "unknown for this CPU"))
  return "\n".join(lines)


def check_original_request(cfg) -> None:
  """UserError unless --original_repo holds the original and it can build cfg's model."""
  if cfg.what != "train":
    raise UserError(f"--original_repo times the training iteration; it does not apply to "
                    f"--what={cfg.what}.")
  problem = original_shim.check_original_repo(cfg.original_repo)
  if problem:
    raise UserError(problem)
  make_fixture.original_functions(cfg)


def _run_row(cmd: List[str], out_path: str, label: str, verbose: bool) -> VariantTiming:
  """Runs one row's process (cmd writes its VariantTiming fields as JSON to out_path)."""
  env = dict(os.environ)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
  logging.info("bench: %s in its own process: %s", label, " ".join(cmd[1:]))
  t = time.perf_counter()
  with tempfile.TemporaryFile() as err:
    rc = subprocess.call(cmd, env=env, stdout=None if verbose else subprocess.DEVNULL,
                         stderr=None if verbose else err)
    if rc != 0:
      err.seek(0)
      tail = err.read().decode("utf-8", "replace").splitlines()[-25:]
      raise UserError(f"bench: the {label} row failed (exit {rc}); its last lines:\n" +
                      "\n".join(tail))
  with open(out_path) as f:
    fields = json.load(f)
  device = fields.pop("device", None)   # the original's row: where its graph ran
  result = VariantTiming(**fields)
  if device == "CPU":
    result.peak_flops = platform_info.cpu_info().peak_flops("float32")
  logging.info("bench: %s done in %.0f s.", label, time.perf_counter() - t)
  return result


def run_isolated_benchmark(cfg, variants: Sequence[Variant]) -> List[VariantTiming]:
  """The original (cfg.original_repo) and then every variant, each in a process of
  its own (its own peak memory; TF1 graph mode is process-wide); ratios to the
  original."""
  results = []
  with tempfile.TemporaryDirectory(prefix="sagan_bench_") as tmp:
    cfg_path = os.path.join(tmp, "config.json")
    with open(cfg_path, "w") as f:
      json.dump(config_lib.to_dict(cfg), f)
    rows = [(ORIGINAL, ["-m", "sagan_tf.tools.original_bench",
                        f"--original_repo={os.path.abspath(cfg.original_repo)}"])]
    rows += [(v.name, ["-m", "sagan_tf.bench", f"--variant={v.name}"]) for v in variants]
    for i, (label, args) in enumerate(rows):
      out_path = os.path.join(tmp, f"row{i}.json")
      cmd = [sys.executable] + args + [f"--config_json={cfg_path}", f"--out={out_path}"]
      results.append(_run_row(cmd, out_path, label, cfg.verbose))
      set_ratios(results)
  return results


def _bench_train(cfg, strategy) -> int:
  variants = parse_variants(cfg.bench_variants)
  n = strategy.num_replicas_in_sync
  print(platform_header(), flush=True)
  print(f"bench train: preset {cfg.preset} ({cfg.image_size}x{cfg.image_size}, "
        f"{cfg.num_classes} classes, gf_dim {cfg.gf_dim}, df_dim {cfg.df_dim}), "
        f"per-replica batch {cfg.per_replica_batch(n)} x {n} replica(s); "
        f"{cfg.bench_repeats} repeats x {cfg.bench_iters} iterations, median.", flush=True)
  default = cfg.precision + (
      "+xla" if config_lib.xla_by_default(cfg, cpu_backend(cfg) == "eigen") else "")
  print(f"Training this model here runs {default} unless told otherwise "
        "(--precision, --jit_compile).", flush=True)
  load_before = load_average()
  gflops = matmul_gflops()
  if cfg.original_repo:
    results = run_isolated_benchmark(cfg, variants)
  else:
    results = run_train_benchmark(cfg, variants, strategy)
  load_after = load_average()
  print(format_table(results))
  rss = peak_rss_mb()
  memory = (f"peak resident memory of each row's own process (peak MiB), this one "
            f"{rss:.0f} MiB" if cfg.original_repo else f"peak resident memory {rss:.0f} MiB "
            "(this process, every variant)")
  print(f"load average before/after: {load_before} / {load_after}; float32 matmul "
        f"yardstick {gflops:.0f} GFLOP/s; {memory}.\n"
        "(cpu s/iter = process CPU time, all threads: steadier than wall time when other "
        "processes share the CPU. GFLOP/s = the convolutions' and matmuls' FLOP per "
        "iteration (train/flops.py; the original's from its own graph) / s/iter; % peak = "
        "that / the estimated peak. tensor MiB = TensorFlow's allocator at its peak during "
        "the row, from building the models to the last iteration: weights, slots, "
        "activations, temporaries (train/memory.py; on the CPU with the BFC allocator "
        "that run.sh turns on, else n/a).)", flush=True)
  if cfg.json:
    info = platform_info.cpu_info()
    write_json(cfg.json, results, {"what": "train", "load_average_before": load_before,
                                   "cpu_model": info.model, "cpu_kind": info.kind,
                                   "bf16_hardware": info.bf16_hardware,
                                   "onednn": platform_info.onednn_enabled(),
                                   "load_average_after": load_after,
                                   "matmul_gflops": gflops, "peak_rss_mb": rss,
                                   "replicas": n,
                                   "ratios_to": ORIGINAL if cfg.original_repo else "first"})
    print(f"wrote {cfg.json}")
  return 0


def bench(cfg, typed=None) -> int:
  """Mode `bench`: --what=train | input | eval (see the module docstring).

  typed: the fields the user typed (config.merge; None = cfg's differences
  from its preset).
  """
  if cfg.original_repo:
    check_original_request(cfg)
  strategy = make_strategy(config_lib.merge("bench", cfg, typed))
  cfg = config_lib.merge("bench", cfg, typed, num_replicas=strategy.num_replicas_in_sync,
                         bf16_hardware=platform_info.cpu_info().bf16_hardware)
  if cfg.what == "train":
    return _bench_train(cfg, strategy)
  if cfg.what == "input":
    return _bench_input(cfg)
  return _bench_eval(cfg)


def _bench_input(cfg) -> int:
  load_before = load_average()
  rate = bench_input.input_images_per_second(cfg)
  rss = peak_rss_mb()
  source = (cfg.dataset if data.parse_dataset_spec(cfg.dataset).kind == "tfrecords" else
            f"temporary random {bench_input.BENCH_IMAGE_SIZE}x{bench_input.BENCH_IMAGE_SIZE} "
            f"TFRecords (--dataset={cfg.dataset} is not tfrecords)")
  print(f"bench input: {rate:.1f} images/s ({source}, batch {cfg.batch_size}); "
        f"load average {load_before} / {load_average()}; peak resident memory {rss:.0f} MiB.",
        flush=True)
  if cfg.json:
    write_json(cfg.json, [], {"what": "input", "images_per_s": rate, "dataset": source,
                              "batch": cfg.batch_size, "peak_rss_mb": rss})
  return 0


def _eval_classifier(cfg, tmp_dir: str):
  """(classifier, description): Inception if --inception_path, the shapes
  classifier for the shapes data, else a stand-in with Inception's interface."""
  if cfg.inception_path or (data.parse_dataset_spec(cfg.dataset).kind == "shapes" and
                            cfg.classifier != "inception"):
    c = eval_run.choose_classifier(cfg)
    return c, c.name
  path = classifiers.build_fake_inception_savedmodel(os.path.join(tmp_dir, "fake_inception"))
  return (classifiers.load_inception(path),
          "STAND-IN for Inception (no --inception_path): 299x299 resize + ~4 MFLOP/image, "
          "not Inception's ~5.7 GFLOP/image, so its samples/s overstate Inception's")


def _bench_eval(cfg) -> int:
  """Generator and classifier samples/s at cfg.eval_batch_size, as eval runs them."""
  tmp = tempfile.mkdtemp(prefix="sagan_bench_eval_")
  try:
    classifier, what = _eval_classifier(cfg, tmp)
    generator = build_generator(cfg)
    sample = tf.function(lambda z, y: generator(z, y, training=False, update_u=False))
    n = cfg.eval_batch_size
    z = tf.random.stateless_normal([n, cfg.z_dim], seed=[cfg.seed, 7])
    y = tf.random.stateless_uniform([n], seed=[cfg.seed, 8], minval=0,
                                    maxval=cfg.num_classes, dtype=tf.int32)
    images = sample(z, y)                                   # warm-up (tracing)
    classifier(images)["logits"].numpy()
    g_times, c_times = [], []
    for _ in range(cfg.bench_repeats):
      t = time.perf_counter()
      images = sample(z, y)
      images.numpy()
      g_times.append(time.perf_counter() - t)
      t = time.perf_counter()
      classifier(images)["logits"].numpy()
      c_times.append(time.perf_counter() - t)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  g, c = statistics.median(g_times), statistics.median(c_times)
  rss = peak_rss_mb()
  print(f"bench eval: preset {cfg.preset}, precision {cfg.precision}, batch {n}, "
        f"median of {cfg.bench_repeats}\n"
        f"  generator   {n / g:8.1f} samples/s ({g:.3f} s/batch)\n"
        f"  classifier  {n / c:8.1f} samples/s ({c:.3f} s/batch): {what}\n"
        f"  together    {n / (g + c):8.1f} samples/s\n"
        f"load average {load_average()}; peak resident memory {rss:.0f} MiB.", flush=True)
  if cfg.json:
    write_json(cfg.json, [], {"what": "eval", "preset": cfg.preset, "batch": n,
                              "generator_samples_per_s": n / g,
                              "classifier_samples_per_s": n / c,
                              "samples_per_s": n / (g + c), "classifier": what,
                              "peak_rss_mb": rss})
  return 0


# ------------------------------------------------------------------ row process
def _row_main(argv=None) -> int:
  """One port variant in this process (run_isolated_benchmark's rows)."""
  p = argparse.ArgumentParser(description="one bench row (run by ./run.sh bench)")
  p.add_argument("--variant", required=True)
  p.add_argument("--config_json", required=True, help="config.to_dict of the bench run")
  p.add_argument("--out", required=True, help="where the timing JSON goes")
  args = p.parse_args(argv)
  with open(args.config_json) as f:
    cfg = config_lib.from_dict(json.load(f))
  strategy = make_strategy(cfg)
  result = time_train_variant(cfg, parse_variant(args.variant), strategy, cfg.bench_repeats,
                              cfg.bench_iters)
  result.peak_rss_mb = peak_rss_mb()
  with open(args.out, "w") as f:
    json.dump(dataclasses.asdict(result), f)
  return 0


if __name__ == "__main__":
  sys.exit(_row_main())
