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

// x with byte k negated where bit k of *bits is set: one masked subtraction from zero (the
// AVX2 file spreads the bits over bytes first), the mask loaded straight from memory.
inline __m256i apply_signs(__m256i x, const uint32_t* bits) {
  return _mm256_mask_sub_epi8(x, _load_mask32(reinterpret_cast<__mmask32*>(const_cast<uint32_t*>(bits))), _mm256_setzero_si256(), x);
}

// acc + the int16 pairs of a times b, summed into int32 lanes: one VNNI vpdpwssd.
inline __m256i madd_add(__m256i acc, __m256i a, __m256i b) { return _mm256_dpwssd_epi32(acc, a, b); }

#include "cpu/iquants_tiles.inc"

// Prefill tiles over unpacked rows (iquants_tiles.inc), two sub-blocks per 512-bit vector:
//   - the weights stored as unsigned bytes v + 64 (at most 62 + 64 = 126; iq1: its u bytes),
//     so that VNNI's vpdpbusd (u8 x s8, 4 products per int32 lane) takes them with the
//     activations as they are; its lanes start from -64·(the lane's 4 activations' sum)
//     (P::prepare, per token; iq1: from 0), which leaves each lane P = the sum of v·x over its
//     4 values, |P| <= 4·62·128 < 2^15;
//   - the scales stored as int32 lanes (scale, 0), so vpdpwssd adds scale·P (P's low 16 bits are
//     P, its high ones times 0): one int32 lane per 4 values, each scaled by its sub-block's (or
//     16 values') scale, exactly as the decode tile's vpmaddubsw + vpdpwssd sum it;
//   - at the super-block's end the low half (even sub-blocks) plus the high half (odd ones) are
//     iq_tile<F, 1, 1>'s 8 int32 lanes (iq1: plus its bsums term), then the same float steps.
struct PrefillAvx512 {
  static constexpr int kRows = 4, kTokens = 4;  // measured against 2x4, 2x8, 3x4
  static __m256i weights(__m256i mag, const uint32_t* signs) {
    return _mm256_add_epi8(apply_signs(mag, signs), _mm256_set1_epi8(64));
  }
  static __m256i scales(__m256i sc) { return _mm256_and_si256(sc, _mm256_set1_epi32(0xFFFF)); }

  // The lane starts of every token's super-blocks: 4 vectors (256 bytes) per block.
  template <class F>
  static void prepare(PrefillActs* a, int64_t n_tok, int64_t blocks) {
    if constexpr (F::kIq1) return;
    a->extra_row = blocks * 256;
    uint8_t* s = iq_extra.reserve(size_t(n_tok * a->extra_row));
    a->extra = s;
    const __m512i sixty_four = _mm512_set1_epi8(64);
    for (int64_t t = 0; t < n_tok; ++t)
      for (int64_t b = 0; b < blocks; ++b)
        for (int p = 0; p < 4; ++p) {
          const __m512i x = _mm512_loadu_si512(act_block(a->x, a->x_row_bytes, t, b)->qs + 64 * p);
          const __m512i sum64 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), sixty_four, x);
          _mm512_store_si512(s + t * a->extra_row + b * 256 + 64 * p, _mm512_sub_epi32(_mm512_setzero_si512(), sum64));
        }
  }

  // Tokens in pairs: token t's 8 float lanes in the low half of a 512-bit vector, t + 1's in the
  // high half (an odd tile's last token alone in the low half), so the block's float steps
  // take one vector per pair; each lane's operations are still the decode tile's.
  template <class F, int NR, int NT>
  static void tile(const PrefillActs& a, int64_t t0, const uint8_t* u, int64_t u_row, int64_t blocks, float* y,
                   int64_t ldy) {
    constexpr int NP = (NT + 1) / 2;
    __m512 facc[NR][NP];
    for (int r = 0; r < NR; ++r)
      for (int p = 0; p < NP; ++p) facc[r][p] = _mm512_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* wu[NR];
      for (int r = 0; r < NR; ++r) wu[r] = u + r * u_row + b * kUnpackedBytes;
      const ActQ8_K* xb[NT];
      const uint8_t* st[NT];
      for (int t = 0; t < NT; ++t) {
        xb[t] = act_block(a.x, a.x_row_bytes, t0 + t, b);
        st[t] = F::kIq1 ? nullptr : a.extra + (t0 + t) * a.extra_row + b * 256;
      }
      __m512i acc[NR][NT];
      for (int r = 0; r < NR; ++r)
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_si512();
      for (int p = 0; p < 4; ++p) {
        __m512i q[NR], sc[NR];
        for (int r = 0; r < NR; ++r) {
          q[r] = _mm512_load_si512(wu[r] + 64 * p);
          sc[r] = _mm512_load_si512(wu[r] + 256 + 64 * p);
        }
        for (int t = 0; t < NT; ++t) {
          const __m512i xv = _mm512_loadu_si512(xb[t]->qs + 64 * p);
          for (int r = 0; r < NR; ++r) {
            const __m512i start = F::kIq1 ? _mm512_setzero_si512() : _mm512_load_si512(st[t] + 64 * p);
            acc[r][t] = _mm512_dpwssd_epi32(acc[r][t], _mm512_dpbusd_epi32(start, q[r], xv), sc[r]);
          }
        }
      }
      // per pair: [d_x of t (8 lanes) | d_x of t + 1], and for iq1 [bsums of t | bsums of t + 1]
      __m512 dx[NP];
      __m512i bsums[NP];
      for (int p = 0; p < NP; ++p) {
        const int t1 = 2 * p + 1 < NT ? 2 * p + 1 : 2 * p;
        dx[p] = _mm512_insertf32x8(_mm512_set1_ps(xb[2 * p]->d), _mm256_set1_ps(xb[t1]->d), 1);
        if constexpr (F::kIq1)
          bsums[p] = _mm512_inserti64x4(_mm512_castsi256_si512(load256(xb[2 * p]->bsums)), load256(xb[t1]->bsums), 1);
      }
      for (int r = 0; r < NR; ++r) {
        float dw;
        std::memcpy(&dw, wu[r] + 544, 4);
        const __m512 dwv = _mm512_set1_ps(dw);
        for (int p = 0; p < NP; ++p) {
          const __m512i a0 = acc[r][2 * p], a1 = acc[r][2 * p + 1 < NT ? 2 * p + 1 : 2 * p];
          // [low half of t | low half of t + 1] + [high half of t | high half of t + 1]
          __m512i sum = _mm512_add_epi32(_mm512_shuffle_i64x2(a0, a1, 0x44), _mm512_shuffle_i64x2(a0, a1, 0xEE));
          if constexpr (F::kIq1) {
            const __m512i coefs = _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(wu[r] + 512)));
            sum = _mm512_add_epi32(_mm512_madd_epi16(coefs, bsums[p]), sum);
          }
          facc[r][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dwv, dx[p]), facc[r][p]);
        }
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t)
        y[t * ldy + r] = hsum8(t % 2 ? _mm512_extractf32x8_ps(facc[r][t / 2], 1) : _mm512_castps512_ps256(facc[r][t / 2]));
  }
};

}  // namespace

const BlockKernel kIQuantsAvx512[] = {
    {DType::IQ2_XXS, iq_kernel<Iq2xxs, PrefillAvx512>},
    {DType::IQ2_XS, iq_kernel<Iq2xs, PrefillAvx512>},
    {DType::IQ2_S, iq_kernel<Iq2s, PrefillAvx512>},
    {DType::IQ3_XXS, iq_kernel<Iq3xxs, PrefillAvx512>},
    {DType::IQ3_S, iq_kernel<Iq3s, PrefillAvx512>},
    {DType::IQ1_S, iq_kernel<Iq1s, PrefillAvx512>},
    {DType::IQ1_M, iq_kernel<Iq1m, PrefillAvx512>},
    {DType::F32, nullptr},
};

}  // namespace r1lite
