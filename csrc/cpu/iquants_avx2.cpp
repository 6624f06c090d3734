// Avx2 kernels of GGUF's i-quants iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m
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

// x with byte k negated where bit k of bits is set: each byte k picks byte k / 8 of the bits and
// tests its bit k % 8; vpsignb by -1 or +1.
inline __m256i apply_signs(__m256i x, uint32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(int(bits)),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
  const __m256i neg = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);  // -1 where set
  return _mm256_sign_epi8(x, _mm256_or_si256(neg, _mm256_set1_epi8(1)));
}

// acc + the int16 pairs of a times b, summed into int32 lanes.
inline __m256i madd_add(__m256i acc, __m256i a, __m256i b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }

#include "cpu/iquants_tiles.inc"

}  // namespace

const BlockKernel kIQuantsAvx2[] = {
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
