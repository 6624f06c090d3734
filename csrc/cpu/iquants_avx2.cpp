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

// x with byte k negated where bit k of *bits is set: each byte k picks byte k / 8 of the bits and
// tests its bit k % 8; vpsignb by -1 or +1.
inline __m256i apply_signs(__m256i x, const uint32_t* bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_castps_si256(_mm256_broadcast_ss(reinterpret_cast<const float*>(bits))),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
  const __m256i neg = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);  // -1 where set
  return _mm256_sign_epi8(x, _mm256_or_si256(neg, _mm256_set1_epi8(1)));
}

// acc + the int16 pairs of a times b, summed into int32 lanes.
inline __m256i madd_add(__m256i acc, __m256i a, __m256i b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }

#include "cpu/iquants_tiles.inc"

// Prefill tiles over unpacked rows (iquants_tiles.inc): the weights stored as signed values v
// (iq1: its u bytes), the sub-blocks' int16 scale vectors as the pieces give them. Per sub-block,
// row and token: vpsignb puts v's signs on the activations, vpmaddubsw multiplies them by |v|
// (the decode tile's magnitudes times its signed activations, pair by pair), vpmaddwd by the
// scales: iq_tile<F, 1, 1>'s int32 lanes.
struct PrefillAvx2 {
  static constexpr int kRows = 3, kTokens = 4;  // measured against 2x4, 2x6, 4x2, 4x3
  static __m256i weights(__m256i mag, const uint32_t* signs) { return apply_signs(mag, signs); }
  static __m256i scales(__m256i sc) { return sc; }
  template <class F>
  static void prepare(PrefillActs*, int64_t, int64_t) {}

  template <class F, int NR, int NT>
  static void tile(const PrefillActs& a, int64_t t0, const uint8_t* u, int64_t u_row, int64_t blocks, float* y,
                   int64_t ldy) {
    __m256 facc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) facc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* wu[NR];
      for (int r = 0; r < NR; ++r) wu[r] = u + r * u_row + b * kUnpackedBytes;
      const ActQ8_K* xb[NT];
      for (int t = 0; t < NT; ++t) xb[t] = act_block(a.x, a.x_row_bytes, t0 + t, b);
      __m256i acc[NR][NT];
      for (int r = 0; r < NR; ++r) {
        if constexpr (F::kIq1) {
          const __m256i coefs = _mm256_load_si256(reinterpret_cast<const __m256i*>(wu[r] + 512));
          for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_madd_epi16(coefs, load256(xb[t]->bsums));
        } else {
          for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_si256();
        }
      }
#pragma GCC unroll 1
      for (int k = 0; k < 8; ++k) {
        __m256i v[NR], m[NR], sc[NR];
        for (int r = 0; r < NR; ++r) {
          v[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(wu[r] + 32 * k));
          m[r] = F::kIq1 ? v[r] : _mm256_abs_epi8(v[r]);
          sc[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(wu[r] + 256 + 32 * k));
        }
        for (int t = 0; t < NT; ++t) {
          const __m256i xv = load256(xb[t]->qs + 32 * k);
          for (int r = 0; r < NR; ++r) {
            const __m256i xs = F::kIq1 ? xv : _mm256_sign_epi8(xv, v[r]);
            acc[r][t] = madd_add(acc[r][t], _mm256_maddubs_epi16(m[r], xs), sc[r]);
          }
        }
      }
      for (int r = 0; r < NR; ++r) {
        float dw;
        std::memcpy(&dw, wu[r] + 544, 4);
        for (int t = 0; t < NT; ++t)
          facc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][t]), _mm256_set1_ps(dw * xb[t]->d), facc[r][t]);
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = hsum8(facc[r][t]);
  }
};

}  // namespace

const BlockKernel kIQuantsAvx2[] = {
    {DType::IQ2_XXS, iq_kernel<Iq2xxs, PrefillAvx2>},
    {DType::IQ2_XS, iq_kernel<Iq2xs, PrefillAvx2>},
    {DType::IQ2_S, iq_kernel<Iq2s, PrefillAvx2>},
    {DType::IQ3_XXS, iq_kernel<Iq3xxs, PrefillAvx2>},
    {DType::IQ3_S, iq_kernel<Iq3s, PrefillAvx2>},
    {DType::IQ1_S, iq_kernel<Iq1s, PrefillAvx2>},
    {DType::IQ1_M, iq_kernel<Iq1m, PrefillAvx2>},
    {DType::F32, nullptr},
};

}  // namespace r1lite
