// Avx2 kernels of GGUF's i-quants iq2_xxs, iq2_xs (core/blocks.h), for cpu/matmul.cpp's dispatch
// (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything here has internal linkage
// except the list. The AVX-512 dispatch uses these too (no AVX-512 i-quant kernels yet).
//
// A super-block of 256 values is walked in its 8 sub-blocks of 32: the 32 magnitudes are 4 grid
// entries (8 unsigned bytes each, at most 43), the signs 4 entries of kSigns8 (+1 / -1 bytes)
// applied to the activations with vpsignb, so that maddubs multiplies unsigned magnitudes by
// signed activations: int16 pairs |m·x + m·x| <= 2·43·127 = 10922, no saturation. A madd with
// the sub-block's odd integer scale 2s + 1 (<= 31) gives int32 lanes; value = d·(2s + 1)/8 ·
// grid · sign, so each (row, token) adds (its super-block's integer sum) · d_w/8 · d_x to an f32
// accumulator, in the same order in every tile shape (a token's result does not depend on its
// batch).
#include <immintrin.h>

#include <cstdlib>
#include <cstring>

#include "core/blocks.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

#include "cpu/block_kernel_helpers.inc"

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Sub-block ib of a block: magnitudes (u8), sign multipliers (s8 +1 / -1), int16 scale of each
// maddubs lane (2s + 1).
struct Iq2xxs {
  static constexpr int64_t kBlockBytes = sizeof(BlockIQ2_XXS);
  static float d(const uint8_t* p) { return f16(reinterpret_cast<const BlockIQ2_XXS*>(p)->d); }
  static void piece(const uint8_t* p, int ib, __m256i* mag, __m256i* sgn, __m256i* sc) {
    uint32_t w[2];  // grid indices (bytes), sign indices (7 bits each) and the scale (top 4 bits)
    std::memcpy(w, reinterpret_cast<const BlockIQ2_XXS*>(p)->qs + 4 * ib, 8);
    *mag = _mm256_setr_epi64x(int64_t(kIq2xxsGrid[w[0] & 0xFF]), int64_t(kIq2xxsGrid[(w[0] >> 8) & 0xFF]),
                              int64_t(kIq2xxsGrid[(w[0] >> 16) & 0xFF]), int64_t(kIq2xxsGrid[w[0] >> 24]));
    *sgn = _mm256_setr_epi64x(int64_t(kSigns8[w[1] & 0x7F]), int64_t(kSigns8[(w[1] >> 7) & 0x7F]),
                              int64_t(kSigns8[(w[1] >> 14) & 0x7F]), int64_t(kSigns8[(w[1] >> 21) & 0x7F]));
    *sc = _mm256_set1_epi16(int16_t(2 * (w[1] >> 28) + 1));
  }
};

// iq2_xs: 9-bit grid index and 7-bit sign index per group; a scale per 16 values (the low
// 128-bit lane holds the sub-block's first 16, the high lane its last 16).
struct Iq2xs {
  static constexpr int64_t kBlockBytes = sizeof(BlockIQ2_XS);
  static float d(const uint8_t* p) { return f16(reinterpret_cast<const BlockIQ2_XS*>(p)->d); }
  static void piece(const uint8_t* p, int ib, __m256i* mag, __m256i* sgn, __m256i* sc) {
    const auto* b = reinterpret_cast<const BlockIQ2_XS*>(p);
    uint16_t q[4];
    std::memcpy(q, b->qs + 4 * ib, 8);
    *mag = _mm256_setr_epi64x(int64_t(kIq2xsGrid[q[0] & 511]), int64_t(kIq2xsGrid[q[1] & 511]),
                              int64_t(kIq2xsGrid[q[2] & 511]), int64_t(kIq2xsGrid[q[3] & 511]));
    *sgn = _mm256_setr_epi64x(int64_t(kSigns8[q[0] >> 9]), int64_t(kSigns8[q[1] >> 9]),
                              int64_t(kSigns8[q[2] >> 9]), int64_t(kSigns8[q[3] >> 9]));
    const int s = b->scales[ib];
    *sc = _mm256_set_m128i(_mm_set1_epi16(int16_t(2 * (s >> 4) + 1)), _mm_set1_epi16(int16_t(2 * (s & 0xF) + 1)));
  }
};

// NR rows x NT tokens; the next NR rows' blocks are prefetched as this tile reads its own.
template <class F, int NR, int NT>
void iq2_tile(const void* x, int64_t x_row_bytes, const uint8_t* w, int64_t w_row_bytes, int64_t blocks,
              float* y, int64_t ldy) {
  __m256 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* wb = w + b * F::kBlockBytes;
    __m256i sum[NR][NT];
    for (int r = 0; r < NR; ++r) {
      prefetch_block<F::kBlockBytes>(wb + (r + NR) * w_row_bytes);
      for (int t = 0; t < NT; ++t) sum[r][t] = _mm256_setzero_si256();
    }
    for (int ib = 0; ib < 8; ++ib) {
      for (int r = 0; r < NR; ++r) {
        __m256i mag, sgn, sc;
        F::piece(wb + r * w_row_bytes, ib, &mag, &sgn, &sc);
        for (int t = 0; t < NT; ++t) {
          const __m256i xs = _mm256_sign_epi8(load256(act_block(x, x_row_bytes, t, b)->qs + 32 * ib), sgn);
          sum[r][t] = _mm256_add_epi32(sum[r][t], _mm256_madd_epi16(_mm256_maddubs_epi16(mag, xs), sc));
        }
      }
    }
    for (int r = 0; r < NR; ++r) {
      const float dw = F::d(wb + r * w_row_bytes) * 0.125f;
      for (int t = 0; t < NT; ++t)
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r][t]),
                                    _mm256_set1_ps(dw * act_block(x, x_row_bytes, t, b)->d), acc[r][t]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = hsum8(acc[r][t]);
}

// Row blocks of kRowBlock stay in cache while the tokens stream past: 2 x 4 tiles for prefill
// (each row's pieces decoded once for 4 tokens), then one row at a time for leftover tokens.
constexpr int kPrefillTokens = 4, kPrefillRows = 2;

template <class F>
void iq2_kernel(const void* x, int64_t x_row_bytes, int64_t n_tok, const void* w, int64_t w_row_bytes,
                int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* wp = static_cast<const uint8_t*>(w);
  const auto* xp = static_cast<const uint8_t*>(x);
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    int64_t t = 0;
    for (; t + kPrefillTokens <= n_tok; t += kPrefillTokens) {
      int64_t r = rb;
      for (; r + kPrefillRows <= re; r += kPrefillRows)
        iq2_tile<F, kPrefillRows, kPrefillTokens>(xp + t * x_row_bytes, x_row_bytes, wp + r * w_row_bytes,
                                                  w_row_bytes, blocks, y + t * ldy + r, ldy);
      for (; r < re; ++r)
        iq2_tile<F, 1, kPrefillTokens>(xp + t * x_row_bytes, x_row_bytes, wp + r * w_row_bytes, w_row_bytes,
                                       blocks, y + t * ldy + r, ldy);
    }
    for (; t < n_tok; ++t)
      for (int64_t r = rb; r < re; ++r)
        iq2_tile<F, 1, 1>(xp + t * x_row_bytes, x_row_bytes, wp + r * w_row_bytes, w_row_bytes, blocks,
                          y + t * ldy + r, 0);
  }
}

}  // namespace

const BlockKernel kIQuantsAvx2[] = {
    {DType::IQ2_XXS, iq2_kernel<Iq2xxs>},
    {DType::IQ2_XS, iq2_kernel<Iq2xs>},
    {DType::F32, nullptr},
};

}  // namespace r1lite
