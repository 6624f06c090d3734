// Which instruction sets this CPU (and OS) supports, read once at startup.
#pragma once

namespace r1lite {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

struct CpuFeatures {
  bool avx2 = false;     // AVX2 + FMA + F16C
  bool avx512 = false;   // AVX-512 F/BW/VL/DQ + VNNI
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
  bool gfni = false;      // GF(2) affine byte maps (the q4_0 AVX-512 tile's nibble split)
  bool avx512_vbmi = false;  // byte permutes (the AVX-512 iq2_xxs / iq2_xs / iq3_xxs decode's grids)
  bool amx_int8 = false;     // AMX int8 tiles, the OS letting this process use them (prefill)
};

const CpuFeatures& cpu_features();
const char* isa_name(Isa isa);
bool isa_supported(Isa isa);
Isa best_isa();

}  // namespace r1lite
