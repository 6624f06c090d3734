// Avx2 kernels of GGUF's block formats q4_k, q5_k, q6_k (core/blocks.h), for
// cpu/matmul.cpp's dispatch (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything
// here has internal linkage except the list.
//
// One super-block (256 values) of a weight row against one ActQ8_K block of a token, all in
// integers until the block's end (as kquants_avx512.cpp, 32 values per vector):
//   - the weight quants are made unsigned bytes in the order of the values, so that they line up
//     with the activations' qs as they are stored;
//   - vpmaddubsw (u8 quant x s8 activation) gives int16 sums of adjacent pairs, and vpmaddwd
//     multiplies them by the sub-block's scale (int16, broadcast over the sub-block's lanes) into
//     int32 lanes;
//   - what depends only on the activations' sums (q4_k/q5_k's mins, q6_k's -32) comes from the
//     block's bsums (ActQ8_K: sums of each 16 activations) with one vpmaddwd;
//   - the int32 lanes become floats once per block, times d_w·d_x (and dmin_w·d_x for the mins).
//
// int16 saturation (vpmaddubsw saturates; vpmaddwd cannot): the activations are |qs| <= 127
// (d = max|x| / 127; -128 would do no harm either) and a quant is at most 15 (q4_k), 31 (q5_k)
// or 63 (q6_k), so a pair sums to at most 2·63·128 = 16128 < 32767. The int32 lanes never come
// near 2^31: a whole block sums to at most 256·63·128·128 (q6_k: quant 63, |x| 128, |scale| 128)
// = 2.6e8, plus q6_k's 32·Σ|scale·bsum| <= 32·16·128·2048 = 1.3e8.
//
// Decode (1 token) reads the raw blocks, one row at a time (tile<1, 1>). Prefill unpacks each
// block of 16 rows once (F::unpack: the quant vectors, scales and d as the tile computes them)
// into a buffer every token tile reads (F::prefill: NR rows x NT tokens). A token's integer
// lanes and float operations are the same, in the same order, in both, so a row's result does
// not depend on its batch (the server batches requests and each must get what it gets alone).
#include <immintrin.h>

#include "core/blocks.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

#include "cpu/block_kernel_helpers.inc"

inline __m256i load32(const void* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// acc + scale · (u · s): u8 quants times s8 activations in int16 pairs, times int16 scales in
// int32 pairs.
inline __m256i dot_scaled(__m256i acc, __m256i u, __m256i s, __m256i scale) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scale));
}

// ---- q4_k and q5_k ----
// The 12 packed scale bytes of BlockQ4_K / BlockQ5_K (blocks.h scale_min_k4) as 16 bytes
// [scale 0-7 | min 0-7]. In 32-bit words u0, u1, u2 of the packed bytes:
//   scales 0-3 = u0 & 63, mins 0-3 = u1 & 63 (per byte),
//   scales 4-7 = (u2 & 15) | (u0 >> 6) << 4,  mins 4-7 = (u2 >> 4) | (u1 >> 6) << 4.
// Reads 16 bytes from p: the 4 after the scales are still the block's (its quants).
inline __m128i unpack_k4_scales(const uint8_t* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i a = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));  // u0, u2, u1, u2
  const __m128i b = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0));  // u0, u0, u1, u1
  const __m128i low = _mm_and_si128(_mm_srlv_epi32(a, _mm_set_epi32(4, 0, 0, 0)),
                                    _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
  // (u >> 6) << 4 per byte = (u >> 2) & 0x30
  const __m128i high = _mm_and_si128(_mm_srlv_epi32(b, _mm_set_epi32(2, 0, 2, 0)),
                                     _mm_set_epi32(0x30303030, 0, 0x30303030, 0));
  return _mm_or_si128(low, high);
}

template <class BlockT, bool kFifthBit>
struct K4Format {
  using Block = BlockT;
  // Prefill tiles of 2 rows x 4 tokens over unpacked rows (measured against 1x4, 1x8, 2x6, 3x4,
  // 4x3, 4x4: 16 ymm registers hold the int accumulators, each row's quants and one token's
  // activations; more spill)
  static constexpr int kPrefillRows = 2, kPrefillTokens = 4;
  // q4_k/q5_k: value v = 64j + 32h + l (j < 4, h < 2, l < 32) is nibble h of qs[32j + l], in
  // sub-block k = 2j + h; q5_k adds bit k of qh[l] as 16. One vector per sub-block k: 32 values
  // in order, against the activations' qs[32k ..].
  template <int NR, int NT>
  static void tile(const uint8_t* x, int64_t x_row_bytes, const uint8_t* w, int64_t w_row_bytes,
                   int64_t blocks, float* y, int64_t ldy) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    // each min twice, as words: min k against bsums 2k and 2k+1 (its 32 values)
    const __m256i min_idx = _mm256_setr_epi8(8, -128, 8, -128, 9, -128, 9, -128, 10, -128, 10, -128,
                                             11, -128, 11, -128, 12, -128, 12, -128, 13, -128, 13,
                                             -128, 14, -128, 14, -128, 15, -128, 15, -128);
    __m256 facc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) facc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const Block* wb[NR];
      __m256i sm[NR];  // [scales | mins] bytes in each 128-bit lane
      for (int r = 0; r < NR; ++r) {
        wb[r] = reinterpret_cast<const Block*>(w + r * w_row_bytes) + b;
        prefetch_next<sizeof(Block), NR>(w + r * w_row_bytes + b * int64_t(sizeof(Block)), w_row_bytes);
        sm[r] = _mm256_broadcastsi128_si256(unpack_k4_scales(wb[r]->scales));
      }
      const ActQ8_K* xb[NT];
      for (int t = 0; t < NT; ++t) xb[t] = act_block(x, x_row_bytes, t, b);
      __m256i acc[NR][NT];
      for (int r = 0; r < NR; ++r)
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_si256();
      for (int k = 0; k < 8; ++k) {
        // pshufb index: byte k (scale k) into every word, zero-extended
        const __m256i scale_idx = _mm256_set1_epi16(short(0x8000 | k));
        __m256i q[NR], sc[NR];
        for (int r = 0; r < NR; ++r) {
          const __m256i v = load32(wb[r]->qs + 32 * (k / 2));
          q[r] = _mm256_and_si256(k % 2 ? _mm256_srli_epi16(v, 4) : v, low4);
          if constexpr (kFifthBit) {
            // bit k of each qh byte, moved to bit 4
            const __m256i qh = load32(wb[r]->qh);
            const __m256i h = k <= 4 ? _mm256_slli_epi16(qh, 4 - k) : _mm256_srli_epi16(qh, k - 4);
            q[r] = _mm256_or_si256(q[r], _mm256_and_si256(h, _mm256_set1_epi8(16)));
          }
          sc[r] = _mm256_shuffle_epi8(sm[r], scale_idx);
        }
        for (int t = 0; t < NT; ++t) {
          const __m256i xv = load32(xb[t]->qs + 32 * k);
          for (int r = 0; r < NR; ++r) acc[r][t] = dot_scaled(acc[r][t], q[r], xv, sc[r]);
        }
      }
      // sum(scale·quant·x)·d·dx - sum(min·bsum)·dmin·dx
      for (int r = 0; r < NR; ++r) {
        const __m256i mins = _mm256_shuffle_epi8(sm[r], min_idx);
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(wb[r]->d));
        const __m256 neg_dmin = _mm256_set1_ps(-_cvtsh_ss(wb[r]->dmin));
        for (int t = 0; t < NT; ++t) {
          const __m256 dx = _mm256_set1_ps(xb[t]->d);
          const __m256 m = _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, load32(xb[t]->bsums)));
          facc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][t]), _mm256_mul_ps(d, dx), facc[r][t]);
          facc[r][t] = _mm256_fmadd_ps(m, _mm256_mul_ps(neg_dmin, dx), facc[r][t]);
        }
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = hsum8(facc[r][t]);
  }

  // The unpacked block (kUnpackedBytes at p) as the prefill tiles read it, unpacked once per
  // block of rows: the 8 quant vectors of tile's sub-blocks k (bytes 0-255), the mins as
  // tile's words (256-287), the 8 scales as int16 (288-303), d and dmin as floats (304, 308).
  static constexpr int64_t kUnpackedBytes = 320;
  static void unpack(const Block* wb, uint8_t* p) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i min_idx = _mm256_setr_epi8(8, -128, 8, -128, 9, -128, 9, -128, 10, -128, 10, -128,
                                             11, -128, 11, -128, 12, -128, 12, -128, 13, -128, 13,
                                             -128, 14, -128, 14, -128, 15, -128, 15, -128);
    for (int k = 0; k < 8; ++k) {
      const __m256i v = load32(wb->qs + 32 * (k / 2));
      __m256i q = _mm256_and_si256(k % 2 ? _mm256_srli_epi16(v, 4) : v, low4);
      if constexpr (kFifthBit) {
        const __m256i qh = load32(wb->qh);
        const __m256i h = k <= 4 ? _mm256_slli_epi16(qh, 4 - k) : _mm256_srli_epi16(qh, k - 4);
        q = _mm256_or_si256(q, _mm256_and_si256(h, _mm256_set1_epi8(16)));
      }
      _mm256_store_si256(reinterpret_cast<__m256i*>(p + 32 * k), q);
    }
    const __m128i sm = unpack_k4_scales(wb->scales);
    _mm256_store_si256(reinterpret_cast<__m256i*>(p + 256), _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(sm), min_idx));
    _mm_store_si128(reinterpret_cast<__m128i*>(p + 288), _mm_cvtepu8_epi16(sm));
    const float d = _cvtsh_ss(wb->d), dmin = _cvtsh_ss(wb->dmin);
    __builtin_memcpy(p + 304, &d, 4);
    __builtin_memcpy(p + 308, &dmin, 4);
  }

  // NR rows (unpacked, u_row bytes apart) x NT tokens: each (row, token)'s integer lanes and
  // float operations are tile's, so the results are the decode tile's bit for bit.
  template <int NR, int NT>
  static void prefill(const uint8_t* x, int64_t x_row_bytes, const uint8_t* u, int64_t u_row, int64_t blocks,
                      float* y, int64_t ldy) {
    __m256 facc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) facc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* wu[NR];
      for (int r = 0; r < NR; ++r) wu[r] = u + r * u_row + b * kUnpackedBytes;
      const ActQ8_K* xb[NT];
      for (int t = 0; t < NT; ++t) xb[t] = act_block(x, x_row_bytes, t, b);
      __m256i acc[NR][NT];
      for (int r = 0; r < NR; ++r)
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_si256();
#pragma GCC unroll 1
      for (int k = 0; k < 8; ++k) {
        __m256i q[NR], sc[NR];
        for (int r = 0; r < NR; ++r) {
          q[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(wu[r] + 32 * k));
          sc[r] = _mm256_set1_epi16(reinterpret_cast<const int16_t*>(wu[r] + 288)[k]);
        }
        for (int t = 0; t < NT; ++t) {
          const __m256i xv = load32(xb[t]->qs + 32 * k);
          for (int r = 0; r < NR; ++r) acc[r][t] = dot_scaled(acc[r][t], q[r], xv, sc[r]);
        }
      }
      for (int r = 0; r < NR; ++r) {
        const __m256i mins = _mm256_load_si256(reinterpret_cast<const __m256i*>(wu[r] + 256));
        float dw, dmin;
        __builtin_memcpy(&dw, wu[r] + 304, 4);
        __builtin_memcpy(&dmin, wu[r] + 308, 4);
        const __m256 d = _mm256_set1_ps(dw);
        const __m256 neg_dmin = _mm256_set1_ps(-dmin);
        for (int t = 0; t < NT; ++t) {
          const __m256 dx = _mm256_set1_ps(xb[t]->d);
          const __m256 m = _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, load32(xb[t]->bsums)));
          facc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][t]), _mm256_mul_ps(d, dx), facc[r][t]);
          facc[r][t] = _mm256_fmadd_ps(m, _mm256_mul_ps(neg_dmin, dx), facc[r][t]);
        }
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = hsum8(facc[r][t]);
  }
};
using Q4K = K4Format<BlockQ4_K, false>;
using Q5K = K4Format<BlockQ5_K, true>;

// ---- q6_k ----
struct Q6K {
  using Block = BlockQ6_K;
  // Prefill tiles of 1 row x 8 tokens over unpacked rows (measured against 1x4, 2x4, 2x6, 3x4,
  // 4x3, 4x4)
  static constexpr int kPrefillRows = 1, kPrefillTokens = 8;
  // Value 128h + 32s + l of a BlockQ6_K: low nibble of ql[64h + 32(s & 1) + l] for s < 2, high
  // nibble for s >= 2; 2 high bits (qh[32h + l] >> 2s) & 3. One vector per (h, s): 32 values in
  // order (sub-blocks 8h + 2s in its low 128-bit lane, 8h + 2s + 1 in its high one).
  template <int NR, int NT>
  static void tile(const uint8_t* x, int64_t x_row_bytes, const uint8_t* w, int64_t w_row_bytes,
                   int64_t blocks, float* y, int64_t ldy) {
    const __m256i low4 = _mm256_set1_epi8(0x0f), bits45 = _mm256_set1_epi8(0x30);
    __m256 facc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) facc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const BlockQ6_K* wb[NR];
      __m256i scales[NR][2];  // the int16 scales of sub-blocks 8h .. 8h+7 in both lanes
      __m256i acc[NR][NT];
      const ActQ8_K* xb[NT];
      for (int t = 0; t < NT; ++t) xb[t] = act_block(x, x_row_bytes, t, b);
      for (int r = 0; r < NR; ++r) {
        wb[r] = reinterpret_cast<const BlockQ6_K*>(w + r * w_row_bytes) + b;
        prefetch_next<sizeof(BlockQ6_K), NR>(w + r * w_row_bytes + b * int64_t(sizeof(BlockQ6_K)), w_row_bytes);
        const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb[r]->scales)));
        scales[r][0] = _mm256_permute2x128_si256(s16, s16, 0x00);
        scales[r][1] = _mm256_permute2x128_si256(s16, s16, 0x11);
        // (q - 32)·x = q·x - 32·x: -32·scale (|.| <= 4096, an int16) against each bsum
        const __m256i neg32 = _mm256_mullo_epi16(s16, _mm256_set1_epi16(-32));
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_madd_epi16(neg32, load32(xb[t]->bsums));
      }
      for (int h = 0; h < 2; ++h) {
        for (int s = 0; s < 4; ++s) {
          // pshufb index: word 2s (low lane) or 2s + 1 (high lane) into every word
          const __m256i scale_idx = _mm256_setr_epi8(
              4 * s, 4 * s + 1, 4 * s, 4 * s + 1, 4 * s, 4 * s + 1, 4 * s, 4 * s + 1, 4 * s, 4 * s + 1,
              4 * s, 4 * s + 1, 4 * s, 4 * s + 1, 4 * s, 4 * s + 1, 4 * s + 2, 4 * s + 3, 4 * s + 2,
              4 * s + 3, 4 * s + 2, 4 * s + 3, 4 * s + 2, 4 * s + 3, 4 * s + 2, 4 * s + 3, 4 * s + 2,
              4 * s + 3, 4 * s + 2, 4 * s + 3, 4 * s + 2, 4 * s + 3);
          __m256i q[NR], sc[NR];
          for (int r = 0; r < NR; ++r) {
            const __m256i ql = load32(wb[r]->ql + 64 * h + 32 * (s & 1));
            const __m256i qh = load32(wb[r]->qh + 32 * h);
            // bits 2s, 2s+1 of qh to bits 4, 5
            const __m256i hb = s < 2 ? _mm256_slli_epi16(qh, 4 - 2 * s) : s == 2 ? qh : _mm256_srli_epi16(qh, 2);
            q[r] = _mm256_or_si256(_mm256_and_si256(s < 2 ? ql : _mm256_srli_epi16(ql, 4), low4),
                                   _mm256_and_si256(hb, bits45));
            sc[r] = _mm256_shuffle_epi8(scales[r][h], scale_idx);
          }
          for (int t = 0; t < NT; ++t) {
            const __m256i xv = load32(xb[t]->qs + 128 * h + 32 * s);
            for (int r = 0; r < NR; ++r) acc[r][t] = dot_scaled(acc[r][t], q[r], xv, sc[r]);
          }
        }
      }
      for (int r = 0; r < NR; ++r) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(wb[r]->d));
        for (int t = 0; t < NT; ++t)
          facc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][t]), _mm256_mul_ps(d, _mm256_set1_ps(xb[t]->d)),
                                       facc[r][t]);
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = hsum8(facc[r][t]);
  }

  // The unpacked block (kUnpackedBytes at p) as the prefill tiles read it: the 8 quant vectors
  // of tile's (h, s) (bytes 0-255), their 8 scale vectors (256-511), -32·scale as int16 words
  // (512-543), d as a float (544).
  static constexpr int64_t kUnpackedBytes = 576;
  static void unpack(const BlockQ6_K* wb, uint8_t* p) {
    const __m256i low4 = _mm256_set1_epi8(0x0f), bits45 = _mm256_set1_epi8(0x30);
    const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb->scales)));
    const __m256i scales[2] = {_mm256_permute2x128_si256(s16, s16, 0x00), _mm256_permute2x128_si256(s16, s16, 0x11)};
    for (int h = 0; h < 2; ++h) {
      for (int s = 0; s < 4; ++s) {
        const __m256i scale_idx = _mm256_setr_epi8(
            4 * s, 4 * s + 1, 4 * s, 4 * s + 1, 4 * s, 4 * s + 1, 4 * s, 4 * s + 1, 4 * s, 4 * s + 1,
            4 * s, 4 * s + 1, 4 * s, 4 * s + 1, 4 * s, 4 * s + 1, 4 * s + 2, 4 * s + 3, 4 * s + 2,
            4 * s + 3, 4 * s + 2, 4 * s + 3, 4 * s + 2, 4 * s + 3, 4 * s + 2, 4 * s + 3, 4 * s + 2,
            4 * s + 3, 4 * s + 2, 4 * s + 3, 4 * s + 2, 4 * s + 3);
        const __m256i ql = load32(wb->ql + 64 * h + 32 * (s & 1));
        const __m256i qh = load32(wb->qh + 32 * h);
        const __m256i hb = s < 2 ? _mm256_slli_epi16(qh, 4 - 2 * s) : s == 2 ? qh : _mm256_srli_epi16(qh, 2);
        const __m256i q = _mm256_or_si256(_mm256_and_si256(s < 2 ? ql : _mm256_srli_epi16(ql, 4), low4),
                                          _mm256_and_si256(hb, bits45));
        _mm256_store_si256(reinterpret_cast<__m256i*>(p + 32 * (4 * h + s)), q);
        _mm256_store_si256(reinterpret_cast<__m256i*>(p + 256 + 32 * (4 * h + s)),
                           _mm256_shuffle_epi8(scales[h], scale_idx));
      }
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(p + 512), _mm256_mullo_epi16(s16, _mm256_set1_epi16(-32)));
    const float d = _cvtsh_ss(wb->d);
    __builtin_memcpy(p + 544, &d, 4);
  }

  // NR rows (unpacked, u_row bytes apart) x NT tokens: each (row, token)'s integer lanes and
  // float operations are tile's, so the results are the decode tile's bit for bit.
  template <int NR, int NT>
  static void prefill(const uint8_t* x, int64_t x_row_bytes, const uint8_t* u, int64_t u_row, int64_t blocks,
                      float* y, int64_t ldy) {
    __m256 facc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) facc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* wu[NR];
      for (int r = 0; r < NR; ++r) wu[r] = u + r * u_row + b * kUnpackedBytes;
      const ActQ8_K* xb[NT];
      for (int t = 0; t < NT; ++t) xb[t] = act_block(x, x_row_bytes, t, b);
      __m256i acc[NR][NT];
      for (int r = 0; r < NR; ++r) {
        const __m256i neg32 = _mm256_load_si256(reinterpret_cast<const __m256i*>(wu[r] + 512));
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_madd_epi16(neg32, load32(xb[t]->bsums));
      }
#pragma GCC unroll 1
      for (int k = 0; k < 8; ++k) {
        __m256i q[NR], sc[NR];
        for (int r = 0; r < NR; ++r) {
          q[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(wu[r] + 32 * k));
          sc[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(wu[r] + 256 + 32 * k));
        }
        for (int t = 0; t < NT; ++t) {
          const __m256i xv = load32(xb[t]->qs + 32 * k);
          for (int r = 0; r < NR; ++r) acc[r][t] = dot_scaled(acc[r][t], q[r], xv, sc[r]);
        }
      }
      for (int r = 0; r < NR; ++r) {
        float dw;
        __builtin_memcpy(&dw, wu[r] + 544, 4);
        const __m256 d = _mm256_set1_ps(dw);
        for (int t = 0; t < NT; ++t)
          facc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][t]), _mm256_mul_ps(d, _mm256_set1_ps(xb[t]->d)),
                                       facc[r][t]);
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = hsum8(facc[r][t]);
  }
};

// Rows [r0, r1) in blocks of kRowBlock, each unpacked once (F::unpack) when there are 4 tokens
// or more; in each block, tokens F::kPrefillTokens at a time through F::kPrefillRows x
// kPrefillTokens tiles of the unpacked rows (the block's last rows one at a time), then 4 at a
// time through one-row tiles, a last 2 or 3 in one one-row tile (of the unpacked rows, or of the
// raw blocks when there are fewer than 4 tokens), a last one through the one-row decode tile of
// the raw blocks.
template <class F>
void kq_rows(const void* xp, int64_t x_row_bytes, int64_t n_tok, const void* wp, int64_t w_row_bytes,
             int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* x = static_cast<const uint8_t*>(xp);
  const auto* w = static_cast<const uint8_t*>(wp);
  constexpr int NR = F::kPrefillRows, NT = F::kPrefillTokens;
  using Block = typename F::Block;
  const int64_t u_row = blocks * F::kUnpackedBytes;
  thread_local KernelScratch unpacked;
  uint8_t* u = n_tok >= 4 ? unpacked.reserve(size_t(kRowBlock * u_row)) : nullptr;
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    if (u)
      for (int64_t r = rb; r < re; ++r)
        for (int64_t b = 0; b < blocks; ++b)
          F::unpack(reinterpret_cast<const Block*>(w + r * w_row_bytes) + b, u + (r - rb) * u_row + b * F::kUnpackedBytes);
    int64_t t = 0;
    for (; t + NT <= n_tok; t += NT) {
      int64_t r = rb;
      for (; r + NR <= re; r += NR)
        F::template prefill<NR, NT>(x + t * x_row_bytes, x_row_bytes, u + (r - rb) * u_row, u_row, blocks,
                                    y + t * ldy + r, ldy);
      for (; r < re; ++r)
        F::template prefill<1, NT>(x + t * x_row_bytes, x_row_bytes, u + (r - rb) * u_row, u_row, blocks,
                                   y + t * ldy + r, ldy);
    }
    for (; t + 4 <= n_tok; t += 4)
      for (int64_t r = rb; r < re; ++r)
        F::template prefill<1, 4>(x + t * x_row_bytes, x_row_bytes, u + (r - rb) * u_row, u_row, blocks,
                                  y + t * ldy + r, ldy);
    // the last 2-3 tokens (a short speculative pass) in one tile: each row read and scaled once
    // for all of them, from the unpacked rows where there are some, else from the blocks
    if (n_tok - t == 2 || n_tok - t == 3) {
      for (int64_t r = rb; r < re; ++r) {
        const uint8_t* xt = x + t * x_row_bytes;
        float* yt = y + t * ldy + r;
        if (u && n_tok - t == 2)
          F::template prefill<1, 2>(xt, x_row_bytes, u + (r - rb) * u_row, u_row, blocks, yt, ldy);
        else if (u)
          F::template prefill<1, 3>(xt, x_row_bytes, u + (r - rb) * u_row, u_row, blocks, yt, ldy);
        else if (n_tok - t == 2)
          F::template tile<1, 2>(xt, x_row_bytes, w + r * w_row_bytes, w_row_bytes, blocks, yt, ldy);
        else
          F::template tile<1, 3>(xt, x_row_bytes, w + r * w_row_bytes, w_row_bytes, blocks, yt, ldy);
      }
      t = n_tok;
    }
    for (; t < n_tok; ++t) {
      // One row at a time, the stream ahead prefetched (kStreamAhead): from DRAM, several rows'
      // streams at once read at half the bandwidth (measured 9-10 vs 20-22 GB/s on one thread for
      // q4_k / q6_k).
      for (int64_t r = rb; r < re; ++r)
        F::template tile<1, 1>(x + t * x_row_bytes, x_row_bytes, w + r * w_row_bytes, w_row_bytes, blocks,
                               y + t * ldy + r, ldy);
    }
  }
}

}  // namespace

const BlockKernel kKQuantsAvx2[] = {
    {DType::Q4_K, kq_rows<Q4K>},
    {DType::Q5_K, kq_rows<Q5K>},
    {DType::Q6_K, kq_rows<Q6K>},
    {DType::F32, nullptr},
};

}  // namespace r1lite
