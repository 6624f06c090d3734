// AVX-512 kernels of GGUF's i-quants iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m
// (cpu/iquants_tiles.inc: the tiles and the integer ranges), for cpu/matmul.cpp's dispatch
// (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything here has internal linkage
// except the list.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "core/blocks.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

#include "cpu/block_kernel_helpers.inc"

// x with byte k negated where bit k of bits is set: one masked subtraction from zero (the
// AVX2 file spreads the bits over bytes first).
inline __m256i apply_signs(__m256i x, uint32_t bits) {
  return _mm256_mask_sub_epi8(x, __mmask32(bits), _mm256_setzero_si256(), x);
}

// acc + the int16 pairs of a times b, summed into int32 lanes: one VNNI vpdpwssd.
inline __m256i madd_add(__m256i acc, __m256i a, __m256i b) { return _mm256_dpwssd_epi32(acc, a, b); }

#include "cpu/iquants_tiles.inc"

}  // namespace

const BlockKernel kIQuantsAvx512[] = {
    {DType::IQ2_XXS, iq_kernel<Iq2xxs>},
    {DType::IQ2_XS, iq_kernel<Iq2xs>},
    {DType::IQ2_S, iq_kernel<Iq2s>},
    {DType::IQ3_XXS, iq_kernel<Iq3xxs>},
    {DType::IQ3_S, iq_kernel<Iq3s>},
    {DType::IQ1_S, iq_kernel<Iq1s>},
    {DType::IQ1_M, iq_kernel<Iq1m>},
    {DType::F32, nullptr},
};

}  // namespace r1lite
