"""One typed configuration for every mode of sagan-tf.

`Config` is a frozen dataclass. Its fields are independent inputs whose
defaults are the original code's settings (brain-research self-attention-gan,
`train_imagenet.py` / `model.py`); anything derived from them (channel lists,
number of blocks, per-replica batch) is a property, so
`dataclasses.replace(cfg, gf_dim=2, num_classes=5)` is still consistent.

Presets are named functions returning a Config. Absl flags are generated from
the fields (`define_flags`), and `from_flags` builds the Config: preset first,
then every flag the user actually set. No other module reads flags.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, FrozenSet, Optional, Tuple

from sagan_tf.errors import UserError


def _f(default, help_text: str, **kwargs):
  """A dataclass field that carries its --help text."""
  if isinstance(default, (list, dict)):
    raise TypeError("use tuples for sequence defaults (the config is frozen)")
  return dataclasses.field(default=default, metadata={"help": help_text, **kwargs})


ATTENTION_VARIANTS = ("original", "paper")
LOSSES = ("hinge", "kl")
PRECISIONS = ("float32", "bfloat16")


class ConfigError(UserError):
  """A configuration that cannot work; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Config:
  """Every setting of a run. Defaults = the original ImageNet 128x128 SAGAN."""

  preset: str = _f("imagenet128", "Named preset the other flags override.")
  # Not a flag: the names of the fields typed on the command line (None when
  # the Config was not built by from_flags), for modes whose defaults depend
  # on what the user set (bench, eval). Not saved, not compared.
  command_line: Optional[FrozenSet[str]] = dataclasses.field(
      default=None, compare=False, repr=False, metadata={"internal": True})

  # ---- Model (original names: gf_dim, df_dim, z_dim, num_classes) ----
  image_size: int = _f(128, "Image height = width; a power of two, 32..512.")
  num_classes: int = _f(1000, "Number of classes of the conditional model.")
  z_dim: int = _f(128, "Latent dimension.")
  gf_dim: int = _f(64, "Generator base width (channels = gf_dim * multiplier).")
  df_dim: int = _f(64, "Discriminator base width.")
  g_channel_mults: Tuple[int, ...] = _f(
      (), "Generator block output multipliers, one per up block "
      "(log2(image_size/4) of them); empty = original rule (16,8,4,2,1 at 128).")
  d_channel_mults: Tuple[int, ...] = _f(
      (), "Discriminator block multipliers, one per downsampling block plus the "
      "final non-downsampling block; empty = original rule (1,2,4,8,16,16 at 128).")
  g_attention_res: Tuple[int, ...] = _f(
      (32,), "Resolutions after whose generator block a self-attention block "
      "is inserted (empty = none).")
  d_attention_res: Tuple[int, ...] = _f(
      (32,), "Resolutions after whose discriminator block self-attention is "
      "inserted (empty = none).")
  cbn_decay: float = _f(0.999, "Moving-average decay of the conditional batch norms "
                        "(inference statistics; original 0.999).")
  output_bn_decay: float = _f(0.9999, "Moving-average decay of the last generator batch "
                              "norm (original 0.9999: made for ~1M steps).")
  attention_variant: str = _f(
      "original", "Self-attention: 'original' (code: pooled keys, C/8 and C/2 "
      "convs) or 'paper' (f,g,h 1x1 convs to C/8 over all positions).",
      choices=ATTENTION_VARIANTS)

  # ---- Losses and optimisers (model.py / train_imagenet.py) ----
  loss: str = _f("hinge", "GAN loss: hinge (original) or kl.", choices=LOSSES)
  lr_g: float = _f(1e-4, "Generator Adam learning rate (TTUR).")
  lr_d: float = _f(4e-4, "Discriminator Adam learning rate (TTUR).")
  beta1: float = _f(0.0, "Adam beta1 (original 0.0).")
  beta2: float = _f(0.999, "Adam beta2 (original code 0.999; the paper says 0.9).")
  adam_epsilon: float = _f(1e-8, "Adam epsilon (TF1 AdamOptimizer default 1e-8).")
  d_steps: int = _f(1, "Discriminator updates per generator update (1 = original).")

  # ---- Training run ----
  batch_size: int = _f(256, "GLOBAL batch size, split evenly over all replicas.")
  train_steps: int = _f(1_000_000, "Total training iterations (G step + D step).")
  steps_per_loop: int = _f(1, "Iterations per call of the compiled step (on device).")
  precision: str = _f("float32", "Compute precision: float32 or bfloat16 "
                      "(Keras mixed precision; losses and SN sigma in float32).",
                      choices=PRECISIONS)
  jit_compile: bool = _f(False, "Compile the train step with XLA.")
  ema_decay: float = _f(0.0, "Decay of an EMA of G's weights (0 = off; e.g. 0.9999).")
  ema_start: int = _f(0, "Step from which the EMA averages (copied before).")
  cross_replica_bn: bool = _f(False, "Batch-norm statistics over all replicas.")
  seed: int = _f(0, "Global seed: weights init, z/label sampling, data order.")
  model_dir: str = _f("", "Run directory (local or gs://): checkpoints, "
                      "TensorBoard events, samples, eval, export.")
  checkpoint_every_steps: int = _f(5000, "Save a checkpoint every N steps.")
  checkpoint_every_secs: int = _f(1800, "Also save at least every N seconds (0 = off).")
  keep_checkpoints: int = _f(5, "How many checkpoints to keep.")
  sample_every_steps: int = _f(5000, "Write a fixed-z sample grid every N steps.")
  summary_every_steps: int = _f(100, "Write TensorBoard scalars every N steps.")
  log_every_secs: float = _f(30.0, "Progress line at least this often.")

  # ---- Devices ----
  tpu: str = _f("", "Cloud TPU name or 'local' on a TPU VM (empty = no TPU).")
  num_cpu_devices: int = _f(0, "Split the CPU into N logical devices and mirror "
                            "over them (testing multi-replica code on any machine).")

  # ---- Data ----
  dataset: str = _f("tfrecords:data/train-*.tfrecords",
                    "tfrecords:GLOB | tfds:NAME[:SPLIT] | shapes")
  tfds_data_dir: str = _f("", "TFDS data_dir holding prepared datasets (never downloads).")
  shuffle_buffer: int = _f(100_000, "Shuffle buffer (examples), capped by memory.")
  eval_split: str = _f("", "Split for real images in evaluation (empty = the source's default).")

  # ---- Evaluation ----
  num_samples: int = _f(50_000, "Generated (and real) images for IS/FID.")
  eval_batch_size: int = _f(100, "Batch for evaluation (original 100).")
  inception_path: str = _f("", "Local copy of the TF-Hub module "
                           "tensorflow/tfgan/eval/inception/1 (SavedModel dir).")
  stats_dir: str = _f("", "Where real-activation statistics are cached "
                      "(empty = MODEL_DIR/eval).")
  intra_fid_classes: int = _f(0, "Classes for intra-FID (0 = off, -1 = all).")
  use_ema: bool = _f(True, "Use the EMA generator weights when the run has them.")
  self_eval: bool = _f(False, "train: evaluate the generator at step 0 and after the "
                       "last step, and print the two side by side (the demo does).")

  watch: bool = _f(False, "eval: evaluate each new checkpoint as training writes it.")
  compare_published: bool = _f(False, "eval: print the run beside the paper's numbers.")
  classifier: str = _f("auto", "eval feature network: auto (shapes classifier for "
                       "the shapes dataset, else Inception), inception, shapes.",
                       choices=("auto", "inception", "shapes"))

  # ---- Export / tools ----
  export_dir: str = _f("", "SavedModel export root (empty = MODEL_DIR/export).")
  checkpoint: str = _f("", "Explicit checkpoint path (empty = latest in MODEL_DIR).")
  output_dir: str = _f("", "sample/attention: where PNGs go (empty = MODEL_DIR/<mode>).")
  labels: Tuple[int, ...] = _f((), "sample/attention: classes to draw (empty = a spread).")
  queries: str = _f("", "attention: query points 'y,x;y,x' in pixels (empty = a spread).")
  truncation: float = _f(1.0, "sample: truncated-normal z bound (1.0 = plain N(0,1)).")
  num_images: int = _f(8, "sample/attention: images per class or grid row.")

  # ---- Benchmark ----
  what: str = _f("train", "bench: what to time: train | input | eval.",
                       choices=("train", "input", "eval"))
  bench_variants: str = _f("", "bench: comma-separated variants (empty = all).")
  bench_repeats: int = _f(3, "bench: timed repeats (median reported).")
  bench_iters: int = _f(3, "bench: iterations per timed repeat.")
  json: str = _f("", "bench: also write results to this JSON path.")

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
                           ("loss", LOSSES), ("precision", PRECISIONS)):
      if getattr(self, field) not in choices:
        raise ConfigError(f"--{field}={getattr(self, field)!r} is not one of "
                          f"{', '.join(choices)}.")
    for name in ("cbn_decay", "output_bn_decay"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ConfigError(f"--{name}={getattr(self, name)} must be in [0, 1).")
    if not 0.0 <= self.ema_decay < 1.0:
      raise ConfigError(f"--ema_decay={self.ema_decay} must be in [0, 1).")
    return self

  @staticmethod
  def preset_names() -> Tuple[str, ...]:
    return tuple(_PRESETS)

  @staticmethod
  def preset(name: str, **overrides: Any) -> "Config":
    """The named preset, with optional field overrides."""
    if name not in _PRESETS:
      raise ConfigError(f"Unknown preset {name!r}; choose one of "
                        f"{', '.join(_PRESETS)}.")
    return dataclasses.replace(_PRESETS[name](), preset=name, **overrides)


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
  "The demo preset", for the measurements behind each choice.
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


# ---------------------------------------------------------------- absl flags
def _flag_kind(field: dataclasses.Field) -> str:
  t = str(field.type)
  if t.startswith("Tuple"):
    return "tuple"
  return {"int": "int", "float": "float", "bool": "bool", "str": "str"}[t]


def define_flags(flag_values=None) -> None:
  """Defines one absl flag per Config field (idempotent)."""
  from absl import flags
  fv = flag_values if flag_values is not None else flags.FLAGS
  for field in _public_fields():
    if field.name in fv:
      continue
    help_text = field.metadata.get("help", field.name)
    kind = _flag_kind(field)
    if field.name == "preset":
      flags.DEFINE_enum("preset", "demo", list(_PRESETS),
                        "Named preset; other flags override it.", flag_values=fv)
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


def from_flags(flag_values=None) -> Config:
  """Config from parsed absl flags: the preset, then every flag set by the user."""
  from absl import flags
  fv = flag_values if flag_values is not None else flags.FLAGS
  cfg = Config.preset(fv["preset"].value)
  overrides: Dict[str, Any] = {}
  typed = set()
  for field in _public_fields():
    if field.name in fv and fv[field.name].present:
      typed.add(field.name)
      if field.name != "preset":
        overrides[field.name] = _parse_value(field, fv[field.name].value)
  _tpu_sized_loops(overrides, typed, cfg)
  return dataclasses.replace(cfg, command_line=frozenset(typed), **overrides).validate()


# Iterations per call of the train function on a TPU unless --steps_per_loop is
# typed: each call is a host round trip (metrics read, summaries, checkpoints
# and the preemption check happen between calls), which one iteration per
# call would pay every step.
TPU_STEPS_PER_LOOP = 100


def _tpu_sized_loops(overrides: Dict[str, Any], typed, cfg: Config) -> None:
  if overrides.get("tpu", cfg.tpu) and "steps_per_loop" not in typed:
    overrides["steps_per_loop"] = TPU_STEPS_PER_LOOP


def _public_fields():
  return [f for f in dataclasses.fields(Config) if not f.metadata.get("internal")]


def to_dict(cfg: Config) -> Dict[str, Any]:
  """JSON-friendly dict (tuples as lists)."""
  return {f.name: list(v) if isinstance(v, tuple) else v
          for f in _public_fields() for v in [getattr(cfg, f.name)]}


def from_dict(d: Dict[str, Any], strict: bool = False) -> Config:
  """Inverse of to_dict; unknown keys are an error only when strict."""
  names = {f.name: f for f in _public_fields()}
  unknown = set(d) - set(names)
  if unknown and strict:
    raise ConfigError(f"Unknown config keys: {sorted(unknown)}")
  kwargs = {}
  for k, v in d.items():
    if k in names:
      kwargs[k] = tuple(v) if isinstance(v, list) else v
  return Config(**kwargs)
