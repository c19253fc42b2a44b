"""platform_info: /proc/cpuinfo facts, CPU kind, oneDNN rule, peak estimate."""

import os
import subprocess
import sys

import pytest

from cpuinfo_fixtures import AMD_ZEN3, AMD_ZEN4, AMD_ZEN5, INTEL_SAPPHIRE_RAPIDS, INTEL_SKYLAKE
from sagan_tf import platform_info as pi


def test_intel_amx_machine():
  info = pi.parse_cpuinfo(INTEL_SAPPHIRE_RAPIDS)
  assert info.model == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
  assert info.kind == "AVX-512+AMX" and info.bf16_hardware
  assert {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"} <= info.flags
  # 2 logical CPUs = 1 core with 2 hyperthreads (siblings 2, cpu cores 1).
  assert (info.logical_cpus, info.physical_cores) == (2, 1)
  assert info.mhz == pytest.approx(2699.998)
  assert info.onednn_default({}) is True
  assert info.peak_flops("bfloat16") == pytest.approx(1 * 2.699998e9 * 1024)
  assert info.peak_flops("float32") == pytest.approx(1 * 2.699998e9 * 64)


def test_amd_avx2_machine():
  info = pi.parse_cpuinfo(AMD_ZEN3)
  assert (info.model, info.kind, info.bf16_hardware) == ("AMD EPYC 7B13", "AVX2", False)
  assert (info.logical_cpus, info.physical_cores) == (2, 2)
  assert info.onednn_default({}) is False
  # BUILD_NOTES "Speed": 2 cores x 2.45 GHz x 32 FLOP/cycle = 157 GFLOP/s.
  assert info.peak_flops("float32") / 1e9 == pytest.approx(156.5, abs=0.1)
  assert info.peak_flops("bfloat16") == info.peak_flops("float32")   # no bf16 units


def test_amd_avx512_bf16_machine_without_amx():
  info = pi.parse_cpuinfo(AMD_ZEN5)
  assert (info.model, info.kind, info.bf16_hardware) == ("AMD EPYC", "AVX-512", True)
  assert (info.logical_cpus, info.physical_cores) == (2, 2)
  assert info.onednn_default({}) is True          # TensorFlow's rule: AVX512_BF16/VNNI
  # 2 cores x 2.596 GHz x 64 (float32) / 128 (bf16 dot products) FLOP/cycle.
  assert info.peak_flops("float32") == pytest.approx(2 * 2.59612e9 * 64)
  assert info.peak_flops("bfloat16") == pytest.approx(2 * 2.59612e9 * 128)


def test_zen4_runs_avx512_at_half_the_rate_of_zen5():
  info = pi.parse_cpuinfo(AMD_ZEN4)
  assert (info.vendor, info.family, info.kind, info.bf16_hardware) == (
      "AuthenticAMD", 25, "AVX-512", True)
  assert info.avx512_on_256_bit_pipes and not pi.parse_cpuinfo(AMD_ZEN5).avx512_on_256_bit_pipes
  assert info.onednn_default({}) is True
  # 2 cores x 2.596 GHz x 32 (float32) / 64 (bf16 dot products) FLOP/cycle.
  assert info.peak_flops("float32") == pytest.approx(2 * 2.596138e9 * 32)
  assert info.peak_flops("bfloat16") == pytest.approx(2 * 2.596138e9 * 64)
  assert "AVX-512 (on 256-bit pipes), bf16 hardware" in pi.describe(info, onednn=True)
  assert not pi.parse_cpuinfo(AMD_ZEN3).avx512_on_256_bit_pipes   # family 25 without AVX-512


def test_avx512_without_vnni_or_bf16_keeps_onednn_off_by_default():
  info = pi.parse_cpuinfo(INTEL_SKYLAKE)
  assert (info.kind, info.bf16_hardware) == ("AVX-512", False)
  assert info.onednn_default({}) is False
  assert info.mhz == pytest.approx(2400.0)          # from "@ 2.40GHz" in the model name
  assert info.flop_per_cycle("bfloat16") == info.flop_per_cycle("float32") == 64
  with_bf16 = pi.parse_cpuinfo(INTEL_SKYLAKE.replace("avx512vl", "avx512vl avx512_bf16"))
  assert with_bf16.kind == "AVX-512" and with_bf16.bf16_hardware
  assert with_bf16.flop_per_cycle("bfloat16") == 128 and with_bf16.onednn_default({})


@pytest.mark.parametrize("value,want", [("1", True), ("true", True), ("0", False),
                                        ("False", False), ("", None)])
def test_tf_enable_onednn_opts_overrides_the_cpu_rule(value, want):
  for text in (INTEL_SAPPHIRE_RAPIDS, AMD_ZEN3):
    info = pi.parse_cpuinfo(text)
    default = info.onednn_default({})
    assert info.onednn_default({"TF_ENABLE_ONEDNN_OPTS": value}) is (
        default if want is None else want)


def test_cpus_allowed_caps_the_cores_and_unknown_facts_give_no_peak():
  assert pi.parse_cpuinfo(AMD_ZEN3, cpus_allowed=1).physical_cores == 1
  arm = pi.parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd sve\n")
  assert (arm.kind, arm.model, arm.mhz) == ("other", "", None)
  assert arm.peak_flops("float32") is None
  assert pi.parse_cpuinfo("").kind == "other"


def test_describe_names_model_kind_and_onednn():
  line = pi.describe(pi.parse_cpuinfo(AMD_ZEN3), onednn=False)
  assert line.startswith("CPU AMD EPYC 7B13: AVX2, no bf16 hardware, oneDNN off")
  line = pi.describe(pi.parse_cpuinfo(INTEL_SAPPHIRE_RAPIDS), onednn=True)
  assert "AVX-512+AMX, bf16 hardware, oneDNN on" in line and "2.70 GHz" in line


def test_this_machine_agrees_with_tensorflow():
  """The module does not import TensorFlow; its oneDNN answer is TF's own switch,
  which on this CPU and environment matches TensorFlow's documented rule."""
  code = ("import sys; from sagan_tf import platform_info as pi; "
          "pi.cpu_info(); print('tensorflow' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert out.stdout.strip() == "False"
  info = pi.cpu_info()
  assert info.logical_cpus >= 1
  assert pi.onednn_enabled() is info.onednn_default(os.environ)
