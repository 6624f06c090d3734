#include "core/cpu_features.h"

#include <cstdlib>
#include <cstring>

#if R1LITE_HAVE_X86
#include <cpuid.h>
#endif
#if R1LITE_HAVE_X86 && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace r1lite {

#if R1LITE_HAVE_X86
// AMX-TILE and AMX-INT8 (CPUID.7.0:EDX bits 24, 25), the OS saving the tile state (XCR0 bits 17,
// 18), and on Linux the process granted the tile data (arch_prctl ARCH_REQ_XCOMP_PERM, Linux 5.16+:
// without it the first tile instruction kills the process).
static bool amx_usable() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !((d >> 24) & 1) || !((d >> 25) & 1)) return false;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1)) return false;  // OSXSAVE, for xgetbv
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & (3u << 17)) != (3u << 17)) return false;
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}
#endif

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
  // R1LITE_AMX=0 likewise (prefill of q8_0 and the K-quants through the AVX-512 tiles); asks the
  // OS for the tile data only when wanted
  const char* amx_env = std::getenv("R1LITE_AMX");
  f.amx_int8 = f.avx512 && !(amx_env && !std::strcmp(amx_env, "0")) && amx_usable();
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
