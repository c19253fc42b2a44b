"""/proc/cpuinfo texts of the CPU kinds the speed policy distinguishes."""

# Trimmed /proc/cpuinfo texts of the two CPU kinds issue 15 measured on (a
# Sapphire Rapids Xeon with AMX, an EPYC Zen 3 with AVX2 only), 2 vCPUs each;
# representative model names, flags shortened to the relevant part.
INTEL_SAPPHIRE_RAPIDS = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
cpu MHz\t\t: 2699.998
siblings\t: 2
cpu cores\t: 1
flags\t\t: fpu sse sse2 avx f16c fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
cpu MHz\t\t: 2699.998
siblings\t: 2
cpu cores\t: 1
flags\t\t: fpu sse sse2 avx f16c fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8
"""

AMD_ZEN3 = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
cpu MHz\t\t: 2445.408
siblings\t: 2
cpu cores\t: 2
flags\t\t: fpu sse sse2 avx f16c fma bmi1 avx2 bmi2 sha_ni vaes vpclmulqdq

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
cpu MHz\t\t: 2445.408
siblings\t: 2
cpu cores\t: 2
flags\t\t: fpu sse sse2 avx f16c fma bmi1 avx2 bmi2 sha_ni vaes vpclmulqdq
"""

# Skylake-SP: AVX-512 without VNNI/BF16, for which TensorFlow leaves oneDNN off.
INTEL_SKYLAKE = """\
processor\t: 0
model name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz
flags\t\t: fpu sse avx fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl
"""

# AMD EPYC Zen 5 (family 26), as on a 2-vCPU cloud VM: AVX-512 with AVX512_BF16
# and no AMX, for which TensorFlow turns oneDNN on. Flags shortened.
AMD_ZEN5 = """\
processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model name\t: AMD EPYC
cpu MHz\t\t: 2596.120
siblings\t: 2
cpu cores\t: 2
flags\t\t: fpu sse sse2 avx f16c fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 avx512_vnni avx_vnni

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
cpu MHz\t\t: 2596.120
siblings\t: 2
cpu cores\t: 2
flags\t\t: fpu sse sse2 avx f16c fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 avx512_vnni avx_vnni
"""

# AMD EPYC Zen 4 (family 25, model 17), 2-vCPU cloud VM: AVX-512 with
# AVX512_BF16, no AMX (oneDNN on); 512-bit instructions run on 256-bit pipes.
AMD_ZEN4 = """\
processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
cpu MHz\t\t: 2596.138
siblings\t: 2
cpu cores\t: 2
flags\t\t: fpu sse sse2 avx f16c fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 avx512_vnni

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
cpu MHz\t\t: 2596.138
siblings\t: 2
cpu cores\t: 2
flags\t\t: fpu sse sse2 avx f16c fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 avx512_vnni
"""
