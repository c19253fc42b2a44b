"""Facts about the CPU this process runs on: model, vector units, oneDNN.

The kernels that are fastest differ between CPU kinds (BUILD_NOTES.md,
"Speed"), so the convolution-gradient policy (layers/fast_conv.py) and the
benchmark read them from here:

* kind: "AVX-512+AMX" (AMX tiles with bf16), "AVX-512" (avx512f), "AVX2", or
  "other" (no AVX2, or not x86);
* bf16_hardware: bf16 arithmetic in hardware (avx512_bf16 or amx_bf16);
* onednn: whether TensorFlow runs its oneDNN kernels (else Eigen's).

oneDNN: TensorFlow's own answer when TensorFlow can be imported
(`_pywrap_util_port.IsMklEnabled`, the switch its kernels read); otherwise
TensorFlow's rule (tensorflow/core/util/util.cc, `IsMKLEnabled`, TF >= 2.9 on
Linux x86): `TF_ENABLE_ONEDNN_OPTS` when set, else on exactly for CPUs with
AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX (plain AVX-512 is not enough).

Importing this module imports neither TensorFlow nor anything of sagan_tf.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from typing import FrozenSet, Mapping, Optional

CPUINFO_PATH = "/proc/cpuinfo"

KIND_AMX = "AVX-512+AMX"
KIND_AVX512 = "AVX-512"
KIND_AVX2 = "AVX2"
KIND_OTHER = "other"

# /proc/cpuinfo flags for which TensorFlow turns oneDNN on by default.
ONEDNN_DEFAULT_FLAGS = frozenset(
    {"avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"})

# Estimated peak FLOP per cycle per core (one FMA = 2 FLOP), by kind and
# precision, assuming two FMA pipes (Zen 3: 2 x 256-bit; Xeon Gold/Platinum:
# 2 x 512-bit; some Xeon SKUs have one and reach half). bfloat16 without bf16
# hardware converts to float32 and runs at the float32 rate at best; with
# AVX512_BF16 a VDPBF16PS does twice float32's work; AMX-BF16 tiles: 1024.
FLOP_PER_CYCLE = {
    (KIND_AVX2, "float32"): 32, (KIND_AVX2, "bfloat16"): 32,
    (KIND_AVX512, "float32"): 64, (KIND_AVX512, "bfloat16"): 64,
    (KIND_AMX, "float32"): 64, (KIND_AMX, "bfloat16"): 1024,
}
AVX512_BF16_FLOP_PER_CYCLE = 128
# AMD Zen 4 (family 25 with AVX-512) splits each 512-bit instruction over its
# two 256-bit pipes: half the AVX-512 rates above (Zen 5, family 26, has
# 512-bit pipes). Measured on a Zen 4, demo model: float32 at 147 GFLOP/s,
# 89% of the halved estimate (BUILD_NOTES.md, "CPU facts in one module").
HALF_WIDTH_AVX512 = (("AuthenticAMD", 25),)


@dataclasses.dataclass(frozen=True)
class CpuInfo:
  """What /proc/cpuinfo says (first processor's model and flags)."""
  model: str                  # e.g. "AMD EPYC 7B13", "" when unknown
  flags: FrozenSet[str]       # lower-case feature flags
  logical_cpus: int           # processors listed
  physical_cores: int         # logical_cpus / threads per core (SMT siblings share FMA pipes)
  mhz: Optional[float]        # mean "cpu MHz" (current or nominal clock), None when absent
  vendor: str = ""            # "vendor_id", e.g. "AuthenticAMD", "GenuineIntel"
  family: Optional[int] = None  # "cpu family" (AMD: 25 = Zen 3 / Zen 4, 26 = Zen 5)

  @property
  def kind(self) -> str:
    """'AVX-512+AMX', 'AVX-512', 'AVX2' or 'other'."""
    if "avx512f" in self.flags:
      return KIND_AMX if {"amx_tile", "amx_bf16"} <= self.flags else KIND_AVX512
    return KIND_AVX2 if "avx2" in self.flags else KIND_OTHER

  @property
  def bf16_hardware(self) -> bool:
    """bf16 arithmetic instructions (AVX512_BF16 dot products or AMX-BF16 tiles)."""
    return bool({"avx512_bf16", "amx_bf16"} & self.flags)

  def onednn_default(self, environ: Mapping[str, str]) -> bool:
    """TensorFlow's rule for oneDNN: TF_ENABLE_ONEDNN_OPTS, else the CPU's features."""
    value = environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower()
    if value in ("1", "true"):
      return True
    if value in ("0", "false"):
      return False
    return bool(ONEDNN_DEFAULT_FLAGS & self.flags)

  @property
  def avx512_on_256_bit_pipes(self) -> bool:
    """AVX-512 executed as two 256-bit halves (AMD Zen 4)."""
    return self.kind == KIND_AVX512 and (self.vendor, self.family) in HALF_WIDTH_AVX512

  def flop_per_cycle(self, precision: str) -> Optional[int]:
    """Estimated peak FLOP/cycle/core for 'float32' or 'bfloat16' (None: unknown kind)."""
    if self.kind == KIND_AVX512 and precision == "bfloat16" and self.bf16_hardware:
      per_cycle = AVX512_BF16_FLOP_PER_CYCLE
    else:
      per_cycle = FLOP_PER_CYCLE.get((self.kind, precision))
    if per_cycle and self.avx512_on_256_bit_pipes:
      return per_cycle // 2
    return per_cycle

  def peak_flops(self, precision: str, cores: Optional[int] = None) -> Optional[float]:
    """Estimated peak FLOP/s: cores x clock x FLOP/cycle (None when a factor is unknown).

    cores defaults to the physical cores this process may run on.
    """
    per_cycle = self.flop_per_cycle(precision)
    if per_cycle is None or not self.mhz:
      return None
    return (cores or self.physical_cores) * self.mhz * 1e6 * per_cycle


def parse_cpuinfo(text: str, cpus_allowed: Optional[int] = None) -> CpuInfo:
  """CpuInfo from the text of /proc/cpuinfo (x86 `flags` or ARM `Features`).

  cpus_allowed: logical CPUs this process may use (sched_getaffinity); caps
  the core count (a container often sees every processor of the host).
  """
  model, flags, mhz, vendor, family = "", None, [], "", None
  logical, siblings, cores = 0, None, None
  for line in text.splitlines():
    key, sep, value = line.partition(":")
    if not sep:
      continue
    key, value = key.strip().lower(), value.strip()
    if key == "processor":
      logical += 1
    elif key in ("model name", "hardware") and not model:
      model = value
    elif key in ("flags", "features") and flags is None:
      flags = frozenset(value.lower().split())
    elif key == "vendor_id" and not vendor:
      vendor = value
    elif key == "cpu family" and family is None:
      family = int(value) if value.isdigit() else None
    elif key == "cpu mhz":
      try:
        mhz.append(float(value))
      except ValueError:
        pass
    elif key == "siblings" and siblings is None:
      siblings = int(value) if value.isdigit() else None
    elif key == "cpu cores" and cores is None:
      cores = int(value) if value.isdigit() else None
  if not mhz:
    found = re.search(r"@\s*([0-9.]+)\s*GHz", model)   # "Intel(R) Xeon(R) ... @ 2.10GHz"
    if found:
      mhz = [float(found.group(1)) * 1000.0]
  logical = max(logical, 1)
  if cpus_allowed:
    logical = min(logical, cpus_allowed)
  threads_per_core = siblings // cores if siblings and cores and siblings >= cores else 1
  return CpuInfo(model=model, flags=flags or frozenset(), logical_cpus=logical,
                 physical_cores=max(1, logical // threads_per_core),
                 mhz=sum(mhz) / len(mhz) if mhz else None, vendor=vendor, family=family)


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
  """This machine's CpuInfo (empty facts when /proc/cpuinfo cannot be read)."""
  try:
    with open(CPUINFO_PATH, encoding="utf-8", errors="replace") as f:
      text = f.read()
  except OSError:
    text = ""
  try:
    allowed = len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    allowed = os.cpu_count()
  return parse_cpuinfo(text, allowed)


@functools.lru_cache(maxsize=1)
def onednn_enabled() -> bool:
  """Whether this process's TensorFlow runs oneDNN CPU kernels.

  TensorFlow's own switch when importable (it imports TensorFlow); else
  TensorFlow's rule applied to this CPU and environment.
  """
  try:
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
    return bool(_pywrap_util_port.IsMklEnabled())
  except (ImportError, AttributeError):
    return cpu_info().onednn_default(os.environ)


def describe(info: Optional[CpuInfo] = None, onednn: Optional[bool] = None) -> str:
  """One line for logs and the benchmark, e.g.
  'CPU AMD EPYC: AVX2, no bf16 hardware, oneDNN off (Eigen kernels); 2 cores at 2.45 GHz'."""
  info = info or cpu_info()
  onednn = onednn_enabled() if onednn is None else onednn
  clock = f" at {info.mhz / 1000:.2f} GHz" if info.mhz else ""
  kind = info.kind + (" (on 256-bit pipes)" if info.avx512_on_256_bit_pipes else "")
  return (f"CPU {info.model or 'unknown model'}: {kind}, "
          f"{'bf16 hardware' if info.bf16_hardware else 'no bf16 hardware'}, "
          f"oneDNN {'on' if onednn else 'off (Eigen kernels)'}; "
          f"{info.physical_cores} core(s){clock}")
