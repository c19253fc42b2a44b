"""One typed configuration for every mode of sagan-tf, and the one rule that merges it.

`Config` is a frozen dataclass. Its fields are independent inputs whose
defaults are the original code's settings (brain-research self-attention-gan,
`train_imagenet.py` / `model.py`); anything derived from them (channel lists,
number of blocks, per-replica batch) is a property, so
`dataclasses.replace(cfg, gf_dim=2, num_classes=5)` is still consistent.

Every field declares its kind (KINDS) next to its help text. `merge` is the
one function that turns what the user typed into the Config a mode runs with,
for every mode, by kind:

* train and bench start from the invocation (the mode's preset, then every
  typed flag). A resumed run is checked against its config.json with
  `differences` (architecture changes are refused: the checkpoints fix it).
* eval, export, sample and attention read a trained run: they start from its
  config.json and take every typed flag on top, except the architecture and
  the preset (those belong to the checkpoints; a typed one that differs is
  ignored with a warning); model_dir is always the one given.
* then context-dependent defaults (CONTEXT_DEFAULTS) fill fields the user did
  not type, e.g. bench's batch 8 per replica for the imagenet presets,
  train's run directory (default_model_dir: runs/<preset>-<dataset name>),
  XLA at 128x128 on Eigen CPUs and the demo's model on AMX CPUs.

Presets are named functions returning a Config. Absl flags are generated from
the fields (`define_flags`); `from_flags` builds the invocation: the mode's
preset, every flag the user set, and the set of typed names (which travels
beside the Config, never in it). No other module reads flags.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import AbstractSet, Any, Callable, Dict, FrozenSet, NamedTuple, Optional, Tuple

from absl import flags, logging

from sagan_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class Kind:
  """What a group of fields is about, and how `merge` and a resumed run treat it.

  on_stored_run: for a mode that reads a trained run (READS_RUN), where the
    value comes from: "stored" (config.json; a typed value is ignored),
    "typed" (config.json unless the user typed it) or "given" (always the
    invocation's).
  on_resume: "refused" (training refuses to resume with another value),
    "setting" (changes how the run trains: a resume with another value is
    refused unless --allow_config_change; then recorded in the launch log),
    "free".
  """
  name: str
  on_stored_run: str
  on_resume: str


ARCHITECTURE = Kind("architecture", "stored", "refused")  # G's and D's variables
ORIGIN = Kind("origin", "stored", "free")                 # the preset a run came from
LOCATION = Kind("location", "given", "free")              # model_dir: where the run is
TRAINING = Kind("training", "typed", "setting")           # losses, optimisers, EMA, seed
DATA = Kind("data", "typed", "setting")                   # where real images come from
SCHEDULE = Kind("schedule", "typed", "free")              # how long; how often to save/log
EXECUTION = Kind("execution", "typed", "free")            # devices, XLA, steps per call
EVAL = Kind("eval", "typed", "free")                      # eval mode (and train's self-eval)
WEIGHTS = Kind("weights", "typed", "free")                # which checkpoint / weights to read
TOOLS = Kind("tools", "typed", "free")                    # export / sample / attention
BENCH = Kind("bench", "typed", "free")                    # bench mode
LAUNCH = Kind("launch", "typed", "free")                  # this launch only: allow a
                                                          # config change; verbose
KINDS = (ARCHITECTURE, ORIGIN, LOCATION, TRAINING, DATA, SCHEDULE, EXECUTION, EVAL,
         WEIGHTS, TOOLS, BENCH, LAUNCH)

MODES = ("train", "eval", "export", "sample", "attention", "bench")
# Modes that read a trained run's config.json and checkpoints.
READS_RUN = ("eval", "export", "sample", "attention")
# The preset a mode starts from when --preset is not given.
DEFAULT_PRESET = "demo"
MODE_PRESETS = {"bench": "imagenet128"}


def _f(default, help_text: str, *, kind: Kind, **kwargs):
  """A dataclass field that carries its --help text and its kind."""
  if isinstance(default, (list, dict)):
    raise TypeError("use tuples for sequence defaults (the config is frozen)")
  return dataclasses.field(default=default,
                           metadata={"help": help_text, "kind": kind, **kwargs})


ATTENTION_VARIANTS = ("original", "paper")
LOSSES = ("hinge", "kl")
PRECISIONS = ("float32", "bfloat16")
# Convolution gradient kernels (layers/fast_conv.py decides what "auto" means).
CONV_GRADIENTS = ("auto", "forward_ops", "native")


class ConfigError(UserError):
  """A configuration that cannot work; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Config:
  """Every setting of a run. Defaults = the original ImageNet 128x128 SAGAN."""

  # Config() is the imagenet128 preset; on the command line the preset is the
  # mode's (MODE_PRESETS) unless --preset is given.
  preset: str = _f("imagenet128", "Named preset the other flags override.", kind=ORIGIN)

  # ---- Model (original names: gf_dim, df_dim, z_dim, num_classes) ----
  image_size: int = _f(128, "Image height = width; a power of two, 32..512.", kind=ARCHITECTURE)
  num_classes: int = _f(1000, "Number of classes of the conditional model.", kind=ARCHITECTURE)
  z_dim: int = _f(128, "Latent dimension.", kind=ARCHITECTURE)
  gf_dim: int = _f(64, "Generator base width (channels = gf_dim * multiplier).",
                   kind=ARCHITECTURE)
  df_dim: int = _f(64, "Discriminator base width.", kind=ARCHITECTURE)
  g_channel_mults: Tuple[int, ...] = _f(
      (), "Generator block output multipliers, one per up block "
      "(log2(image_size/4) of them); empty = original rule (16,8,4,2,1 at 128).",
      kind=ARCHITECTURE)
  d_channel_mults: Tuple[int, ...] = _f(
      (), "Discriminator block multipliers, one per downsampling block plus the "
      "final non-downsampling block; empty = original rule (1,2,4,8,16,16 at 128).",
      kind=ARCHITECTURE)
  g_attention_res: Tuple[int, ...] = _f(
      (32,), "Resolutions after whose generator block a self-attention block "
      "is inserted (empty = none).", kind=ARCHITECTURE)
  d_attention_res: Tuple[int, ...] = _f(
      (32,), "Resolutions after whose discriminator block self-attention is "
      "inserted (empty = none).", kind=ARCHITECTURE)
  cbn_decay: float = _f(0.999, "Moving-average decay of the conditional batch norms "
                        "(inference statistics; original 0.999).", kind=TRAINING)
  output_bn_decay: float = _f(0.9999, "Moving-average decay of the last generator batch "
                              "norm (original 0.9999: made for ~1M steps).", kind=TRAINING)
  attention_variant: str = _f(
      "original", "Self-attention: 'original' (code: pooled keys, C/8 and C/2 "
      "convs) or 'paper' (f,g,h 1x1 convs to C/8 over all positions).",
      choices=ATTENTION_VARIANTS, kind=ARCHITECTURE)

  # ---- Losses and optimisers (model.py / train_imagenet.py) ----
  loss: str = _f("hinge", "GAN loss: hinge (original) or kl.", choices=LOSSES, kind=TRAINING)
  lr_g: float = _f(1e-4, "Generator Adam learning rate (TTUR).", kind=TRAINING)
  lr_d: float = _f(4e-4, "Discriminator Adam learning rate (TTUR).", kind=TRAINING)
  beta1: float = _f(0.0, "Adam beta1 (original 0.0).", kind=TRAINING)
  beta2: float = _f(0.999, "Adam beta2 (original code 0.999; the paper says 0.9).",
                    kind=TRAINING)
  adam_epsilon: float = _f(1e-8, "Adam epsilon (TF1 AdamOptimizer default 1e-8).",
                           kind=TRAINING)
  d_steps: int = _f(1, "Discriminator updates per generator update (1 = original).",
                    kind=TRAINING)

  # ---- Training run ----
  batch_size: int = _f(256, "GLOBAL batch size, split evenly over all replicas.", kind=TRAINING)
  train_steps: int = _f(1_000_000, "Total training iterations (G step + D step).",
                        kind=SCHEDULE)
  steps_per_loop: int = _f(1, "Iterations per call of the compiled step (on device).",
                           kind=EXECUTION)
  precision: str = _f("float32", "Compute precision: float32 or bfloat16 "
                      "(Keras mixed precision; losses and SN sigma in float32).",
                      choices=PRECISIONS, kind=TRAINING)
  jit_compile: bool = _f(False, "Compile the train step with XLA. Training's default: on "
                         "in float32 at 128x128 or more on a CPU whose TensorFlow runs "
                         "Eigen kernels (oneDNN off), off elsewhere.", kind=EXECUTION)
  conv_gradients: str = _f(
      "auto", "Convolution gradient kernels: auto (forward-op gradients on CPUs with "
      "Eigen kernels outside XLA, native on oneDNN CPUs, GPU, TPU), forward_ops or "
      "native (force one, for A/B runs).", choices=CONV_GRADIENTS, kind=EXECUTION)
  ema_decay: float = _f(0.0, "Decay of an EMA of G's weights (0 = off; e.g. 0.9999).",
                        kind=TRAINING)
  ema_start: int = _f(0, "Step from which the EMA averages (copied before).", kind=TRAINING)
  cross_replica_bn: bool = _f(False, "Batch-norm statistics over all replicas.", kind=TRAINING)
  seed: int = _f(0, "Global seed: weights init, z/label sampling, data order.", kind=TRAINING)
  model_dir: str = _f("", "Run directory (local or gs://): checkpoints, "
                      "TensorBoard events, samples, eval, export. train: empty = "
                      "runs/<preset>-<dataset name> (the demo on shapes: runs/demo).",
                      kind=LOCATION)
  allow_config_change: bool = _f(
      False, "train: resume a run with other training/data settings than it was "
      "launched with (they apply from the resumed step on and are recorded in "
      "MODEL_DIR/launches.jsonl); without it such a resume is refused.", kind=LAUNCH)
  verbose: bool = _f(False, "Show TensorFlow's start-up log lines (CUDA probing, "
                     "kernel libraries), hidden by default.", kind=LAUNCH)
  checkpoint_every_steps: int = _f(5000, "Save a checkpoint every N steps.", kind=SCHEDULE)
  checkpoint_every_secs: int = _f(1800, "Also save at least every N seconds (0 = off).",
                                  kind=SCHEDULE)
  keep_checkpoints: int = _f(5, "How many checkpoints to keep.", kind=SCHEDULE)
  sample_every_steps: int = _f(5000, "Write a fixed-z sample grid every N steps.",
                               kind=SCHEDULE)
  summary_every_steps: int = _f(100, "Write TensorBoard scalars every N steps.", kind=SCHEDULE)
  log_every_secs: float = _f(30.0, "Progress line at least this often.", kind=SCHEDULE)

  # ---- Devices ----
  tpu: str = _f("", "Cloud TPU name or 'local' on a TPU VM (empty = no TPU).", kind=EXECUTION)
  num_cpu_devices: int = _f(0, "Split the CPU into N logical devices and mirror "
                            "over them (testing multi-replica code on any machine).",
                            kind=EXECUTION)

  # ---- Data ----
  dataset: str = _f("tfrecords:data/train-*.tfrecords",
                    "tfrecords:GLOB | tfds:NAME[:SPLIT] | shapes", kind=DATA)
  tfds_data_dir: str = _f("", "TFDS data_dir holding prepared datasets (never downloads).",
                          kind=DATA)
  shuffle_buffer: int = _f(100_000, "Shuffle buffer (examples), capped by memory.", kind=DATA)
  eval_split: str = _f("", "Split for real images in evaluation (empty = the source's default).",
                       kind=DATA)

  # ---- Evaluation ----
  num_samples: int = _f(50_000, "Generated (and real) images for IS/FID.", kind=EVAL)
  eval_batch_size: int = _f(100, "Batch for evaluation (original 100).", kind=EVAL)
  inception_path: str = _f("", "Local copy of the TF-Hub module "
                           "tensorflow/tfgan/eval/inception/1 (SavedModel dir).", kind=EVAL)
  stats_dir: str = _f("", "Where real-activation statistics are cached "
                      "(empty = MODEL_DIR/eval).", kind=EVAL)
  intra_fid_classes: int = _f(0, "Classes for intra-FID (0 = off, -1 = all).", kind=EVAL)
  use_ema: bool = _f(True, "Use the EMA generator weights when the run has them.", kind=WEIGHTS)
  self_eval: bool = _f(False, "train: evaluate the generator at step 0 and after the "
                       "last step, and print the two side by side (the demo does).", kind=EVAL)

  watch: bool = _f(False, "eval: evaluate each new checkpoint as training writes it.",
                   kind=EVAL)
  compare_published: bool = _f(False, "eval: print the run beside the paper's numbers.",
                               kind=EVAL)
  classifier: str = _f("auto", "eval feature network: auto (shapes classifier for "
                       "the shapes dataset, else Inception), inception, shapes.",
                       choices=("auto", "inception", "shapes"), kind=EVAL)

  # ---- Export / tools ----
  export_dir: str = _f("", "SavedModel export root (empty = MODEL_DIR/export).", kind=TOOLS)
  checkpoint: str = _f("", "Explicit checkpoint path (empty = latest in MODEL_DIR).",
                       kind=WEIGHTS)
  output_dir: str = _f("", "sample/attention: where PNGs go (empty = MODEL_DIR/<mode>).",
                       kind=TOOLS)
  labels: Tuple[int, ...] = _f((), "sample/attention: classes to draw (empty = a spread).",
                               kind=TOOLS)
  queries: str = _f("", "attention: query points 'y,x;y,x' in pixels (empty = a spread).",
                    kind=TOOLS)
  truncation: float = _f(1.0, "sample: truncated-normal z bound (1.0 = plain N(0,1)).",
                         kind=TOOLS)
  num_images: int = _f(8, "sample/attention: images per class or grid row.", kind=TOOLS)

  # ---- Benchmark ----
  what: str = _f("train", "bench: what to time: train | input | eval.",
                 choices=("train", "input", "eval"), kind=BENCH)
  bench_variants: str = _f("", "bench: comma-separated variants (empty = all).", kind=BENCH)
  bench_repeats: int = _f(3, "bench: timed repeats (median reported).", kind=BENCH)
  bench_iters: int = _f(3, "bench: iterations per timed repeat.", kind=BENCH)
  json: str = _f("", "bench: also write results to this JSON path.", kind=BENCH)
  original_repo: str = _f(
      "", "bench: a checkout of the original code (brain-research/self-attention-gan at "
      "ad9612e): also time its training iteration, side by side; every row then runs "
      "in its own process (its own peak memory).", kind=BENCH)

  # ------------------------------------------------------------------ derived
  @property
  def num_up_blocks(self) -> int:
    """Generator up blocks (and discriminator downsampling blocks): 4 -> size."""
    return int(round(math.log2(self.image_size // 4)))

  @property
  def g_mults(self) -> Tuple[int, ...]:
    """Output multiplier of each generator block; the 4x4 input uses g_mults[0]."""
    if self.g_channel_mults:
      return tuple(self.g_channel_mults)
    n = self.num_up_blocks
    return tuple(min(16, 2 ** (n - 1 - i)) for i in range(n))

  @property
  def d_mults(self) -> Tuple[int, ...]:
    """Multiplier of each discriminator block; the last one does not downsample."""
    if self.d_channel_mults:
      return tuple(self.d_channel_mults)
    down = tuple(min(16, 2 ** i) for i in range(self.num_up_blocks))
    return down + (down[-1],)

  @property
  def compute_dtype(self) -> str:
    return "bfloat16" if self.precision == "bfloat16" else "float32"

  def per_replica_batch(self, num_replicas: int) -> int:
    """Global batch / replicas; a clear error when it does not divide."""
    if num_replicas < 1 or self.batch_size % num_replicas:
      raise ConfigError(
          f"--batch_size={self.batch_size} (the global batch) is not divisible by "
          f"the {num_replicas} replicas; use a multiple of {num_replicas}.")
    return self.batch_size // num_replicas

  # ------------------------------------------------------------ validation
  def validate(self) -> "Config":
    """Checks the config is buildable; raises ConfigError naming the field."""
    if self.image_size < 32 or self.image_size > 512 or (
        self.image_size & (self.image_size - 1)):
      raise ConfigError(f"--image_size={self.image_size} must be a power of two "
                        "from 32 to 512.")
    for name in ("num_classes", "z_dim", "gf_dim", "df_dim", "batch_size",
                 "train_steps", "steps_per_loop", "d_steps", "eval_batch_size"):
      if getattr(self, name) < 1:
        raise ConfigError(f"--{name}={getattr(self, name)} must be >= 1.")
    n = self.num_up_blocks
    if len(self.g_mults) != n:
      raise ConfigError(f"--g_channel_mults needs {n} values for image_size "
                        f"{self.image_size}, got {len(self.g_mults)}.")
    if len(self.d_mults) != n + 1:
      raise ConfigError(f"--d_channel_mults needs {n + 1} values for image_size "
                        f"{self.image_size}, got {len(self.d_mults)}.")
    g_res = tuple(4 * 2 ** (i + 1) for i in range(n))
    d_res = tuple(self.image_size // 2 ** (i + 1) for i in range(n))
    for field, allowed in (("g_attention_res", g_res), ("d_attention_res", d_res)):
      for r in getattr(self, field):
        if r not in allowed:
          raise ConfigError(
              f"--{field} has {r}, a resolution this model does not have; "
              f"choose from {sorted(set(allowed))}.")
    g_ch = dict(zip(g_res, (self.gf_dim * m for m in self.g_mults)))
    d_ch = dict(zip(d_res, (self.df_dim * m for m in self.d_mults)))
    for field, channels in (("g_attention_res", g_ch), ("d_attention_res", d_ch)):
      for r in getattr(self, field):
        if channels[r] < 8:
          raise ConfigError(
              f"--{field} has {r}, where the model has {channels[r]} channels; "
              "self-attention needs at least 8 (raise --gf_dim/--df_dim or move it).")
    for field, choices in (("attention_variant", ATTENTION_VARIANTS),
                           ("loss", LOSSES), ("precision", PRECISIONS),
                           ("conv_gradients", CONV_GRADIENTS)):
      if getattr(self, field) not in choices:
        raise ConfigError(f"--{field}={getattr(self, field)!r} is not one of "
                          f"{', '.join(choices)}.")
    for name in ("cbn_decay", "output_bn_decay"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ConfigError(f"--{name}={getattr(self, name)} must be in [0, 1).")
    if not 0.0 <= self.ema_decay < 1.0:
      raise ConfigError(f"--ema_decay={self.ema_decay} must be in [0, 1).")
    for name in ("lr_g", "lr_d"):
      value = getattr(self, name)
      if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--{name}={value} must be a finite number > 0 "
                          f"(the original's is {getattr(Config(), name)}).")
    return self

  @staticmethod
  def preset_names() -> Tuple[str, ...]:
    return tuple(_PRESETS)


def _imagenet128() -> Config:
  """The original code's settings: 128x128, 1000 classes, attention at 32."""
  return Config()


def _imagenet128_feat64() -> Config:
  """Attention at 64x64 in G and D: the paper's headline model (IS 52.52)."""
  return Config(g_attention_res=(64,), d_attention_res=(64,))


def _demo() -> Config:
  """The embedded default: a 32x32 SAGAN on the procedural `shapes` data.

  Sized so that training takes ~12 minutes on a 2-core AVX2 CPU: width 24
  (0.47M G / 0.34M D parameters), batch 16, float32 (no bf16 arithmetic on
  such CPUs), learning rates above the original's; see BUILD_NOTES.md,
  "The demo preset", for the measurements behind each choice. On a CPU with
  bf16 hardware and oneDNN, train trains a wider bfloat16 model instead
  (DEMO_ON_BF16_CPU).
  """
  return Config(
      image_size=32, num_classes=10, z_dim=128, gf_dim=24, df_dim=24,
      g_attention_res=(16,), d_attention_res=(16,),
      lr_g=4e-4, lr_d=8e-4, batch_size=16, train_steps=3600, steps_per_loop=10,
      precision="float32", ema_decay=0.99, ema_start=0,
      # Inference-mode batch statistics must catch up within a short run:
      # 0.9999 would still weigh the initial (0, 1) statistics by half at the end.
      cbn_decay=0.99, output_bn_decay=0.99,
      dataset="shapes", shuffle_buffer=10_000, model_dir="runs/demo",
      checkpoint_every_steps=500, checkpoint_every_secs=300,
      sample_every_steps=500, summary_every_steps=50,
      num_samples=10_000, eval_batch_size=250, self_eval=True)


_PRESETS = {
    "imagenet128": _imagenet128,
    "imagenet128_feat64": _imagenet128_feat64,
    "demo": _demo,
}


def _preset(name: str, **overrides: Any) -> Config:
  """Config.preset(name, **overrides): the named preset, with field overrides."""
  if name not in _PRESETS:
    raise ConfigError(f"Unknown preset {name!r}; choose one of "
                      f"{', '.join(_PRESETS)}.")
  return dataclasses.replace(_PRESETS[name](), preset=name, **overrides)


# Set after the class is built: defined in the class body, the method would
# replace the `preset` field's default and metadata (Config().preset would be
# this function). An instance's `preset` is its field; the class's is this.
Config.preset = staticmethod(_preset)


# ------------------------------------------------------- context defaults
# bench on the imagenet presets: their 256 is a TPU-pod batch and one
# iteration is ~1.2 TFLOP, so on a CPU bench times 8 images per replica, the
# variants that matter there (float32 with and without XLA, and bfloat16 where
# the CPU has bf16 hardware: context fact `bf16_hardware`), one iteration per repeat.
BENCH_PER_REPLICA_BATCH = {"imagenet128": 8, "imagenet128_feat64": 8}
BENCH_LARGE_VARIANTS = "float32,float32+xla"
BENCH_LARGE_ITERS = 1


def bench_large_variants(bf16_hardware: bool) -> str:
  """bench's default variants for the imagenet presets on a CPU with/without bf16 hardware."""
  return BENCH_LARGE_VARIANTS + (",bfloat16" if bf16_hardware else "")


class ContextDefault(NamedTuple):
  """A default that depends on the context: when the user did not type
  `field` and the mode is in `modes`, merge sets it to `value(cfg, context)`
  unless that is None. `context` holds run-time facts (e.g. num_replicas)."""
  field: str
  modes: Tuple[str, ...]
  value: Callable[["Config", Dict[str, Any]], Any]


def _bench_large(fn):
  return lambda cfg, ctx: fn(cfg, ctx) if cfg.preset in BENCH_PER_REPLICA_BATCH else None


# train compiles with XLA unless --jit_compile is typed when the step runs on
# a CPU with Eigen kernels (context fact `cpu_backend` "eigen") in float32 at
# this image size or more: measured 1.1-1.6x the uncompiled imagenet128
# iteration on an AVX2 CPU, depending on the day, and the only variant at
# 1.4-1.7x the original there (BUILD_NOTES, Speed, "XLA by default on Eigen
# CPUs at 128x128"). The 32x32 demo model was no faster compiled (and would
# pay the compile at every start), oneDNN CPUs and GPUs were not measured
# faster, a TPU compiles anyway.
XLA_ON_EIGEN_MIN_IMAGE_SIZE = 128


def xla_by_default(cfg: "Config", eigen_cpu: bool) -> bool:
  """Whether train compiles cfg's step when --jit_compile is not typed."""
  return (eigen_cpu and cfg.precision == "float32" and
          cfg.image_size >= XLA_ON_EIGEN_MIN_IMAGE_SIZE)


def _xla_on_eigen_cpu(cfg, ctx):
  return True if xla_by_default(cfg, ctx.get("cpu_backend") == "eigen") else None


# The demo on a CPU with bf16 hardware (AMX or AVX512_BF16) whose TensorFlow
# runs oneDNN (context facts `bf16_hardware`, `cpu_backend`): there this model
# trains at ~7.3-7.6 iterations/s in bfloat16 with the native conv gradients
# (an AMX Xeon: class consistency 0.73 after 6,500 iterations in 14.5 minutes,
# issue 13's measurement; an AVX-512-BF16 AMD EPYC: 0.137 s/iteration); on
# AVX2 CPUs it runs at ~1.8 iterations/s in float32 (1,600 in 15 minutes, too
# few to learn the classes), so the preset's own smaller float32 model stays
# (BUILD_NOTES, "The demo on CPUs with bf16 hardware").
DEMO_ON_BF16_CPU = dict(gf_dim=32, df_dim=32, batch_size=32, precision="bfloat16",
                        train_steps=6500)


def _demo_on_bf16_cpu(field: str):
  def rule(cfg, ctx):
    if (cfg.preset == "demo" and ctx.get("cpu_backend") == "onednn" and
        ctx.get("bf16_hardware")):
      return DEMO_ON_BF16_CPU[field]
    return None
  return rule


# Iterations per call of the train function on a TPU unless --steps_per_loop is
# typed: each call is a host round trip (metrics read, summaries, checkpoints
# and the preemption check happen between calls), which one iteration per
# call would pay every step.
TPU_STEPS_PER_LOOP = 100

RUNS_ROOT = "runs"


def dataset_name(dataset: str) -> str:
  """A short file-name-safe name of a --dataset value: `shapes`; tfds:NAME ->
  NAME; tfrecords: a folder or file -> its name (without .tfrecords), a glob
  of files -> the name of their folder (data/train-*.tfrecords -> data)."""
  scheme, _, rest = dataset.partition(":")
  if scheme == "tfds":
    name = rest.partition(":")[0]
  elif scheme == "tfrecords":
    parts = [p for p in rest.replace("\\", "/").split("/") if p]
    while parts and any(c in parts[-1] for c in "*?["):
      parts.pop()
    name = parts[-1] if parts else ""
    if name.endswith(".tfrecords"):
      name = name[:-len(".tfrecords")]
  else:
    name = dataset
  return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or "data"


def default_model_dir(cfg: "Config") -> str:
  """train without --model_dir: the preset's own directory when the preset's
  dataset is used (the demo on shapes: runs/demo), else
  runs/<preset>-<dataset name>, so a run on other data never resumes (or
  writes into) another preset's or dataset's run."""
  base = Config.preset(cfg.preset)
  if base.model_dir and cfg.dataset == base.dataset:
    return base.model_dir
  return f"{RUNS_ROOT}/{cfg.preset}-{dataset_name(cfg.dataset)}"


# Applied in order by merge; a rule sees what the rules before it set.
# train's data facts (context "data_image_size", "data_num_classes": what the
# records say, train/loop.py reads them) replace the preset's: a preset is a
# starting point, the records' size and labels.txt are the dataset's facts.
CONTEXT_DEFAULTS = (
    ContextDefault("steps_per_loop", ("train", "bench"),
                   lambda cfg, ctx: TPU_STEPS_PER_LOOP if cfg.tpu else None),
    ContextDefault("image_size", ("train",), lambda cfg, ctx: ctx.get("data_image_size")),
    ContextDefault("num_classes", ("train",), lambda cfg, ctx: ctx.get("data_num_classes")),
    *(ContextDefault(field, ("train",), _demo_on_bf16_cpu(field)) for field in DEMO_ON_BF16_CPU),
    ContextDefault("jit_compile", ("train",), _xla_on_eigen_cpu),
    ContextDefault("model_dir", ("train",), lambda cfg, ctx: default_model_dir(cfg)),
    ContextDefault("batch_size", ("bench",), _bench_large(
        lambda cfg, ctx: BENCH_PER_REPLICA_BATCH[cfg.preset] * ctx.get("num_replicas", 1))),
    ContextDefault("bench_variants", ("bench",),
                   _bench_large(lambda cfg, ctx: bench_large_variants(
                       bool(ctx.get("bf16_hardware", False))))),
    ContextDefault("bench_iters", ("bench",), _bench_large(lambda cfg, ctx: BENCH_LARGE_ITERS)),
)


# ---------------------------------------------------------------- absl flags
def _flag_kind(field: dataclasses.Field) -> str:
  t = str(field.type)
  if t.startswith("Tuple"):
    return "tuple"
  return {"int": "int", "float": "float", "bool": "bool", "str": "str"}[t]


def define_flags(flag_values=None) -> None:
  """Defines one absl flag per Config field (idempotent)."""
  fv = flag_values if flag_values is not None else flags.FLAGS
  for field in dataclasses.fields(Config):
    if field.name in fv:
      continue
    help_text = field.metadata["help"]
    kind = _flag_kind(field)
    if field.name == "preset":
      # No flag default: the mode decides (MODE_PRESETS).
      modes = ", ".join(f"{m}: {p}" for m, p in MODE_PRESETS.items())
      flags.DEFINE_enum("preset", None, list(_PRESETS),
                        f"{help_text} Default {DEFAULT_PRESET} ({modes}).", flag_values=fv)
    elif "choices" in field.metadata:
      flags.DEFINE_enum(field.name, field.default, list(field.metadata["choices"]),
                        help_text, flag_values=fv)
    elif kind == "tuple":
      flags.DEFINE_list(field.name, [str(v) for v in field.default],
                        help_text + " (comma-separated)", flag_values=fv)
    elif kind == "bool":
      flags.DEFINE_bool(field.name, field.default, help_text, flag_values=fv)
    elif kind == "int":
      flags.DEFINE_integer(field.name, field.default, help_text, flag_values=fv)
    elif kind == "float":
      flags.DEFINE_float(field.name, field.default, help_text, flag_values=fv)
    else:
      flags.DEFINE_string(field.name, field.default, help_text, flag_values=fv)


def _parse_value(field: dataclasses.Field, value):
  if _flag_kind(field) == "tuple":
    try:
      return tuple(int(v) for v in value if str(v).strip())
    except ValueError as e:
      raise ConfigError(f"--{field.name} takes comma-separated integers, got "
                        f"{','.join(value)!r}.") from e
  return value


class Invocation(NamedTuple):
  """What the user asked for: the mode's preset with the typed flags applied
  (`config`), and the names of the fields typed (`typed`, "preset" included
  when given). The input of `merge`."""
  config: "Config"
  typed: FrozenSet[str]


def from_flags(flag_values=None, mode: str = "train") -> Invocation:
  """The invocation from parsed absl flags: the mode's preset, then every flag set."""
  fv = flag_values if flag_values is not None else flags.FLAGS
  preset = fv["preset"].value or MODE_PRESETS.get(mode, DEFAULT_PRESET)
  overrides: Dict[str, Any] = {}
  typed = set()
  for field in dataclasses.fields(Config):
    if field.name in fv and fv[field.name].present:
      typed.add(field.name)
      if field.name != "preset":
        overrides[field.name] = _parse_value(field, fv[field.name].value)
  cfg = Config.preset(preset, **overrides).validate()
  return Invocation(cfg, frozenset(typed))


# ------------------------------------------------------------------- merge
def kind_of(name: str) -> Kind:
  return _FIELDS[name].metadata["kind"]


def fields_of(*kinds: Kind) -> Tuple[str, ...]:
  """Names of the Config fields of the given kinds, in declaration order."""
  return tuple(f.name for f in dataclasses.fields(Config) if f.metadata["kind"] in kinds)


def typed_fields(cfg: Config) -> FrozenSet[str]:
  """For a Config built in code (no command line): the fields where it differs
  from its preset, and the preset itself."""
  base = Config.preset(cfg.preset)
  return frozenset({"preset"} | {f.name for f in dataclasses.fields(Config)
                                 if getattr(cfg, f.name) != getattr(base, f.name)})


def merge(mode: str, given: Config, typed: Optional[AbstractSet[str]] = None,
          stored: Optional[Config] = None, **context: Any) -> Config:
  """The Config `mode` runs with: the one merge rule (see the module docstring).

  Args:
    mode: one of MODES.
    given: the invocation's Config (Invocation.config; or a Config built in code).
    typed: the fields the user typed (Invocation.typed); None = typed_fields(given).
    stored: the run's config.json, for the modes in READS_RUN (required there).
    **context: run-time facts CONTEXT_DEFAULTS use (num_replicas, bf16_hardware).
  Returns:
    The validated Config.
  """
  if mode not in MODES:
    raise ValueError(f"unknown mode {mode!r}")
  typed = typed_fields(given) if typed is None else frozenset(typed)
  if mode in READS_RUN:
    if stored is None:
      raise ValueError(f"mode {mode} merges onto a run's stored config; pass stored=")
    take, ignored = {}, []
    for name in typed | set(fields_of(LOCATION)):
      policy = kind_of(name).on_stored_run
      if policy == "stored":
        if _normalise(getattr(given, name)) != _normalise(getattr(stored, name)):
          ignored.append(name)
      else:
        take[name] = getattr(given, name)
    if ignored:
      logging.warning("Ignoring --%s: the run in %s was trained with %s (its config.json).",
                      ", --".join(sorted(ignored)), given.model_dir,
                      ", ".join(f"{n}={_normalise(getattr(stored, n))}" for n in sorted(ignored)))
    cfg = dataclasses.replace(stored, **take)
  else:
    cfg = given
  for rule in CONTEXT_DEFAULTS:
    if mode in rule.modes and rule.field not in typed:
      value = rule.value(cfg, context)
      if value is not None:
        cfg = dataclasses.replace(cfg, **{rule.field: value})
  return cfg.validate()


def differences(old: Config, new: Config, kinds: Tuple[Kind, ...]) -> Tuple[str, ...]:
  """'field: old -> new' for every field of `kinds` whose value differs.

  Empty channel multipliers mean "the original rule": the lists the models
  build are compared. A resumed run refuses the ARCHITECTURE differences
  (kinds whose on_resume is "refused").
  """
  out = []
  for name in fields_of(*kinds):
    a, b = getattr(old, name), getattr(new, name)
    if name in ("g_channel_mults", "d_channel_mults"):
      a, b = (old.g_mults, new.g_mults) if name[0] == "g" else (old.d_mults, new.d_mults)
    if _normalise(a) != _normalise(b):
      out.append(f"{name}: {_normalise(a)} -> {_normalise(b)}")
  return tuple(out)


def kinds_on_resume(policy: str) -> Tuple[Kind, ...]:
  """The kinds whose Kind.on_resume is `policy` ("refused", "setting", "free")."""
  return tuple(k for k in KINDS if k.on_resume == policy)


def _normalise(value):
  return tuple(value) if isinstance(value, (list, tuple)) else value


# ------------------------------------------------------------- dict / JSON
def to_dict(cfg: Config) -> Dict[str, Any]:
  """JSON-friendly dict (tuples as lists)."""
  return {f.name: list(v) if isinstance(v, tuple) else v
          for f in dataclasses.fields(cfg) for v in [getattr(cfg, f.name)]}


def from_dict(d: Dict[str, Any], strict: bool = False) -> Config:
  """Inverse of to_dict; unknown keys are an error only when strict."""
  unknown = set(d) - set(_FIELDS)
  if unknown and strict:
    raise ConfigError(f"Unknown config keys: {sorted(unknown)}")
  kwargs = {}
  for k, v in d.items():
    if k in _FIELDS:
      kwargs[k] = tuple(v) if isinstance(v, list) else v
  return Config(**kwargs)


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
