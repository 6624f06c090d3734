#include "core/cpu_features.h"

#include <cstdlib>
#include <cstring>

namespace r1lite {

static CpuFeatures detect() {
  CpuFeatures f;
#if R1LITE_HAVE_X86
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the wide registers (XGETBV).
  f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
  f.avx512 = f.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  f.avx512_vnni = f.avx512 && __builtin_cpu_supports("avx512vnni");
  f.avx512 = f.avx512 && f.avx512_vnni;  // our AVX-512 kernels use VNNI for the quantized formats
  f.avx512_bf16 = f.avx512 && __builtin_cpu_supports("avx512bf16");
  // R1LITE_GFNI=0 turns it off (the tests use it to run the other q4_0 path on a GFNI CPU)
  const char* gfni_env = std::getenv("R1LITE_GFNI");
  f.gfni = f.avx512 && __builtin_cpu_supports("gfni") && !(gfni_env && !std::strcmp(gfni_env, "0"));
  // R1LITE_VBMI=0 likewise (those i-quants' other decode path)
  const char* vbmi_env = std::getenv("R1LITE_VBMI");
  f.avx512_vbmi = f.avx512 && __builtin_cpu_supports("avx512vbmi") && !(vbmi_env && !std::strcmp(vbmi_env, "0"));
#endif
  return f;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return cpu_features().avx2;
    case Isa::Avx512: return cpu_features().avx512;
  }
  return false;
}

Isa best_isa() {
  if (isa_supported(Isa::Avx512)) return Isa::Avx512;
  if (isa_supported(Isa::Avx2)) return Isa::Avx2;
  return Isa::Scalar;
}

}  // namespace r1lite
