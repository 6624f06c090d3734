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
// q6_k: decode (1 token) reads the raw blocks, one row at a time (tile<1, 1>); prefill unpacks
// each block of 16 rows once (F::unpack: the quant vectors, scales and d as the tile computes
// them) into a buffer every token tile reads (F::prefill: NR rows x NT tokens). q4_k and q5_k
// sum each super-block into one int32 and go through 8-row groups for prefill (the section
// "one int32 lane per super-block" below). Either way a token's integer sums and float
// operations are the same, in the same order, on every path, so a row's result does not depend
// on its batch (the server batches requests and each must get what it gets alone).
#include <immintrin.h>

#include <cstring>

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
  static constexpr bool kFifth = kFifthBit;
  // value v = 64j + 32h + l (j < 4, h < 2, l < 32) is nibble h of qs[32j + l], in sub-block
  // k = 2j + h; q5_k adds bit k of qh[l] as 16. One vector per sub-block k: 32 values in order,
  // against the activations' qs[32k ..].
  static __m256i quants(const Block* wb, int k) {
    const __m256i v = load32(wb->qs + 32 * (k / 2));
    __m256i q = _mm256_and_si256(k % 2 ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(0x0f));
    if constexpr (kFifthBit) {
      const __m256i qh = load32(wb->qh);
      const __m256i h = k <= 4 ? _mm256_slli_epi16(qh, 4 - k) : _mm256_srli_epi16(qh, k - 4);
      q = _mm256_or_si256(q, _mm256_and_si256(h, _mm256_set1_epi8(16)));
    }
    return q;
  }
  // From unpack_k4_scales' bytes in both lanes: each min twice, as words (min k against bsums 2k
  // and 2k + 1, its 32 values).
  static __m256i mins_twice(__m256i sm) {
    return _mm256_shuffle_epi8(sm, _mm256_setr_epi8(8, -128, 8, -128, 9, -128, 9, -128, 10, -128, 10, -128, 11, -128,
                                                    11, -128, 12, -128, 12, -128, 13, -128, 13, -128, 14, -128, 14,
                                                    -128, 15, -128, 15, -128));
  }
  // A block unpacked (kUnpackedBytes at p) for k4_unpack_group: the 8 quant vectors (bytes
  // 0-255), the mins twice as words (256-287), the 8 scales as int16 (288-303), d and dmin as
  // floats (304, 308).
  static constexpr int64_t kUnpackedBytes = 320;
  static void unpack(const Block* wb, uint8_t* p) {
    for (int k = 0; k < 8; ++k) _mm256_store_si256(reinterpret_cast<__m256i*>(p + 32 * k), quants(wb, k));
    const __m128i sm = unpack_k4_scales(wb->scales);
    _mm256_store_si256(reinterpret_cast<__m256i*>(p + 256), mins_twice(_mm256_broadcastsi128_si256(sm)));
    _mm_store_si128(reinterpret_cast<__m128i*>(p + 288), _mm_cvtepu8_epi16(sm));
    const float d = _cvtsh_ss(wb->d), dmin = _cvtsh_ss(wb->dmin);
    __builtin_memcpy(p + 304, &d, 4);
    __builtin_memcpy(p + 308, &dmin, 4);
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


// ---- q4_k and q5_k: one int32 lane per super-block ----
// For each (row, token) every super-block's integer sums are exact: I_b = sum_k scale_k·(q·x over
// sub-block k) and M_b = sum_k min_k·(sum of sub-block k's x); in f32, lane j = b mod 8 of an
// accumulator takes I_b·(d·d_x) and then M_b·(-dmin·d_x), for b = j, j + 8, ... in order, and the
// eight lanes are summed as hsum8 sums them. Small calls (decode, verification passes) compute
// that from the raw blocks a row at a time (k4_lane_tile: per sub-block a maddubs and a madd by
// its scale, a hadd tree per 8 super-blocks); prefill from 8-row groups of interleaved quants
// (k4_group_tile, as blocks32_avx2.cpp's group_tile): a token's 4 activation bytes broadcast
// against 8 rows, maddubs sums added in int16 (q4_k: 8 x 2·15·127 = 30480; q5_k: 4 x 2·31·127 =
// 31496), one madd by the rows' scales per sub-block, where a one-row tile spends a maddubs and a
// madd on each (row, token) pair per sub-block.

// The f16 d (word 0) and dmin (word 1) of n <= 8 consecutive blocks as floats (lanes past n: 0),
// put together in general registers: a vector load of scalars just stored would wait for them.
template <class Block>
inline void k4_block_scales(const Block* b, int n, __m256* d, __m256* dmin) {
  uint64_t d_lo = 0, d_hi = 0, m_lo = 0, m_hi = 0;
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) {
    if (j >= n) break;
    uint32_t v;
    std::memcpy(&v, b + j, 4);
    if (j < 4) {
      d_lo |= uint64_t(v & 0xFFFF) << (16 * j);
      m_lo |= uint64_t(v >> 16) << (16 * j);
    } else {
      d_hi |= uint64_t(v & 0xFFFF) << (16 * (j - 4));
      m_hi |= uint64_t(v >> 16) << (16 * (j - 4));
    }
  }
  *d = _mm256_cvtph_ps(_mm_set_epi64x(int64_t(d_hi), int64_t(d_lo)));
  *dmin = _mm256_cvtph_ps(_mm_set_epi64x(int64_t(m_hi), int64_t(m_lo)));
}

// Per token, its super-blocks' d_x as a float array (blocks per token), once per call.
inline const float* k4_act_scales(const uint8_t* x, int64_t x_row_bytes, int64_t n_tok, int64_t blocks) {
  thread_local KernelScratch scales;
  auto* f = reinterpret_cast<float*>(scales.reserve(size_t(n_tok * blocks) * sizeof(float)));
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t b = 0; b < blocks; ++b) f[t * blocks + b] = act_block(x, x_row_bytes, t, b)->d;
  return f;
}

// One row (raw blocks at w) x NT tokens; fx: token 0's k4_act_scales.
template <class F, int NT>
void k4_lane_tile(const uint8_t* x, int64_t x_row_bytes, const float* fx, const uint8_t* w, int64_t blocks, float* y,
                  int64_t ldy) {
  using Block = typename F::Block;
  __m256 facc[NT];
  for (int t = 0; t < NT; ++t) facc[t] = _mm256_setzero_ps();
  for (int64_t b0 = 0; b0 < blocks; b0 += 8) {
    const int n = blocks - b0 < 8 ? int(blocks - b0) : 8;
    __m256i iv[NT][8], mv[NT][8];
    for (int j = 0; j < 8; ++j) {
      if (j >= n) {
        for (int t = 0; t < NT; ++t) iv[t][j] = mv[t][j] = _mm256_setzero_si256();
        continue;
      }
      const Block* wb = reinterpret_cast<const Block*>(w) + b0 + j;
      prefetch_block<sizeof(Block)>(reinterpret_cast<const char*>(wb) + kStreamAhead);
      const __m256i sm = _mm256_broadcastsi128_si256(unpack_k4_scales(wb->scales));
      const ActQ8_K* xb[NT];
      __m256i acc[NT];
      for (int t = 0; t < NT; ++t) {
        xb[t] = act_block(x, x_row_bytes, t, b0 + j);
        acc[t] = _mm256_setzero_si256();
      }
      for (int k = 0; k < 8; ++k) {
        const __m256i q = F::quants(wb, k);
        const __m256i sc = _mm256_shuffle_epi8(sm, _mm256_set1_epi16(short(0x8000 | k)));  // scale k in every word
        for (int t = 0; t < NT; ++t) acc[t] = dot_scaled(acc[t], q, load32(xb[t]->qs + 32 * k), sc);
      }
      const __m256i mins = F::mins_twice(sm);
      for (int t = 0; t < NT; ++t) {
        iv[t][j] = acc[t];
        mv[t][j] = _mm256_madd_epi16(mins, load32(xb[t]->bsums));
      }
    }
    __m256 d, dmin;
    k4_block_scales(reinterpret_cast<const typename F::Block*>(w) + b0, n, &d, &dmin);
    const __m256 nd = _mm256_xor_ps(dmin, _mm256_set1_ps(-0.0f));
    for (int t = 0; t < NT; ++t) {
      const float* f = fx + t * blocks + b0;
      const __m256 xd = n == 8 ? _mm256_loadu_ps(f) : _mm256_maskload_ps(f, lanes_below(n));
      facc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum_lanes8(iv[t])), _mm256_mul_ps(d, xd), facc[t]);
      facc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum_lanes8(mv[t])), _mm256_mul_ps(nd, xd), facc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) y[t * ldy] = hsum8(facc[t]);
}

// An unpacked group of 8 rows, per super-block: for each sub-block k its 8 vectors of interleaved
// quants (vector i: values 4i..4i+3 of each row, a row per 32-bit lane; 2048 bytes), its scales
// (lane r: row r's scale in both words; 256), the mins of sub-blocks 2p, 2p+1 as the words of lane
// r (128), then d and -dmin of the rows (64).
constexpr int64_t kK4GroupBytes = 2048 + 256 + 128 + 64;

template <class F>
void k4_unpack_group(const uint8_t* w, int64_t stride, int64_t blocks, int nrows, uint8_t* u) {
  using Block = typename F::Block;
  alignas(64) uint8_t rows[8][F::kUnpackedBytes];
  for (int64_t b = 0; b < blocks; ++b) {
    for (int r = 0; r < 8; ++r) {
      if (r < nrows) F::unpack(reinterpret_cast<const Block*>(w + r * stride) + b, rows[r]);
      else std::memset(rows[r], 0, sizeof(rows[r]));
    }
    uint8_t* g = u + b * kK4GroupBytes;
    for (int k = 0; k < 8; ++k) {
      __m256i q[8], out[8];
      for (int r = 0; r < 8; ++r) q[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(rows[r] + 32 * k));
      transpose_words8(q, out);
      for (int i = 0; i < 8; ++i) _mm256_store_si256(reinterpret_cast<__m256i*>(g + 256 * k + 32 * i), out[i]);
    }
    auto* sc = reinterpret_cast<uint32_t*>(g + 2048);
    auto* mn = reinterpret_cast<uint32_t*>(g + 2304);
    auto* df = reinterpret_cast<float*>(g + 2432);
    for (int r = 0; r < 8; ++r) {
      const auto* s16 = reinterpret_cast<const uint16_t*>(rows[r] + 288);   // scales as int16
      const auto* m16 = reinterpret_cast<const uint16_t*>(rows[r] + 256);   // each min twice
      for (int k = 0; k < 8; ++k) sc[8 * k + r] = s16[k] | uint32_t(s16[k]) << 16;
      for (int p = 0; p < 4; ++p) mn[8 * p + r] = m16[4 * p] | uint32_t(m16[4 * p + 2]) << 16;
      float d, dmin;
      std::memcpy(&d, rows[r] + 304, 4);
      std::memcpy(&dmin, rows[r] + 308, 4);
      df[r] = d;
      df[8 + r] = -dmin;
    }
  }
}

// Per token and super-block, the activations' sums of sub-blocks 2p and 2p + 1 as the words of
// uint32 p (bsums are sums of 16).
inline const uint32_t* k4_pair_sums(const uint8_t* x, int64_t x_row_bytes, int64_t n_tok, int64_t blocks) {
  thread_local KernelScratch sums;
  auto* s = reinterpret_cast<uint32_t*>(sums.reserve(size_t(n_tok * blocks * 4) * sizeof(uint32_t)));
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t b = 0; b < blocks; ++b) {
      const int16_t* bs = act_block(x, x_row_bytes, t, b)->bsums;
      for (int p = 0; p < 4; ++p)
        s[(t * blocks + b) * 4 + p] = uint16_t(bs[4 * p] + bs[4 * p + 1]) | uint32_t(uint16_t(bs[4 * p + 2] + bs[4 * p + 3])) << 16;
    }
  return s;
}

// 8 unpacked rows (u) x NT tokens (their pair sums ps, blocks x 4 per token); nrows stored.
template <class F, int NT>
void k4_group_tile(const uint8_t* x, int64_t x_row_bytes, const uint32_t* ps, int64_t blocks, const uint8_t* u,
                   int nrows, float* y, int64_t ldy) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 part[NT][8];
  for (int j = 0; j < 8; ++j) {
    __m256 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t b = j; b < blocks; b += 8) {
      const uint8_t* g = u + b * kK4GroupBytes;
      const ActQ8_K* xb[NT];
      __m256i iv[NT];
      for (int t = 0; t < NT; ++t) {
        xb[t] = act_block(x, x_row_bytes, t, b);
        iv[t] = _mm256_setzero_si256();
      }
      for (int k = 0; k < 8; ++k) {
        __m256i wv[8];
        for (int i = 0; i < 8; ++i) wv[i] = _mm256_load_si256(reinterpret_cast<const __m256i*>(g + 256 * k + 32 * i));
        const __m256i sc = _mm256_load_si256(reinterpret_cast<const __m256i*>(g + 2048 + 32 * k));
        for (int t = 0; t < NT; ++t) {
          const int8_t* xq = xb[t]->qs + 32 * k;
          const auto part4 = [&](int i) {
            return _mm256_maddubs_epi16(wv[i], _mm256_castps_si256(_mm256_broadcast_ss(reinterpret_cast<const float*>(xq + 4 * i))));
          };
          const __m256i s0 = _mm256_add_epi16(_mm256_add_epi16(part4(0), part4(1)), _mm256_add_epi16(part4(2), part4(3)));
          const __m256i s1 = _mm256_add_epi16(_mm256_add_epi16(part4(4), part4(5)), _mm256_add_epi16(part4(6), part4(7)));
          if constexpr (F::kFifth)
            iv[t] = _mm256_add_epi32(iv[t], _mm256_add_epi32(_mm256_madd_epi16(s0, sc), _mm256_madd_epi16(s1, sc)));
          else
            iv[t] = _mm256_add_epi32(iv[t], _mm256_madd_epi16(_mm256_add_epi16(s0, s1), sc));
        }
      }
      const float* df = reinterpret_cast<const float*>(g + 2432);
      for (int t = 0; t < NT; ++t) {
        const uint32_t* p = ps + (t * blocks + b) * 4;
        const auto mterm = [&](int q) {
          return _mm256_madd_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(g + 2304 + 32 * q)),
                                   _mm256_set1_epi32(int(p[q])));
        };
        const __m256i m = _mm256_add_epi32(_mm256_add_epi32(mterm(0), mterm(1)), _mm256_add_epi32(mterm(2), mterm(3)));
        const __m256 xd = _mm256_set1_ps(xb[t]->d);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iv[t]), _mm256_mul_ps(_mm256_load_ps(df), xd), acc[t]);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), _mm256_mul_ps(_mm256_load_ps(df + 8), xd), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) part[t][j] = acc[t];
  }
  for (int t = 0; t < NT; ++t) store_group_sums(part[t], nrows, y + t * ldy);
}

template <class F>
void k4_lane_rows(const void* xp, int64_t x_row_bytes, int64_t n_tok, const void* wp, int64_t w_row_bytes,
                  int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* x = static_cast<const uint8_t*>(xp);
  const auto* w = static_cast<const uint8_t*>(wp);
  if (n_tok < kSmallBatch) {  // each row once, its tokens in tiles of at most 5 (6-8 in two halves)
    const float* fx = k4_act_scales(x, x_row_bytes, n_tok, blocks);
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t t = 0; t < n_tok;) {
        const int64_t left = n_tok - t;
        const int nt = left <= 5 ? int(left) : left <= 8 ? int(left + 1) / 2 : 5;
        with_token_count<5>(nt, [&](auto c) {
          k4_lane_tile<F, decltype(c)::value>(x + t * x_row_bytes, x_row_bytes, fx + t * blocks, w + r * w_row_bytes, blocks,
                                              y + t * ldy + r, ldy);
        });
        t += nt;
      }
    return;
  }
  constexpr int kTokens = 4, kGroups = 2;  // 16 rows unpacked, then every token past them
  const uint32_t* ps = k4_pair_sums(x, x_row_bytes, n_tok, blocks);
  thread_local KernelScratch unpacked;
  uint8_t* u = unpacked.reserve(size_t(kGroups * blocks * kK4GroupBytes));
  for (int64_t rb = r0; rb < r1; rb += kGroups * 8) {
    int nrows[kGroups];
    for (int g = 0; g < kGroups; ++g) {
      const int64_t left = r1 - (rb + 8 * g);
      nrows[g] = left <= 0 ? 0 : left < 8 ? int(left) : 8;
      if (nrows[g] > 0) k4_unpack_group<F>(w + (rb + 8 * g) * w_row_bytes, w_row_bytes, blocks, nrows[g], u + g * blocks * kK4GroupBytes);
    }
    for (int64_t t = 0; t < n_tok; t += kTokens) {
      const int nt = n_tok - t < kTokens ? int(n_tok - t) : kTokens;
      for (int g = 0; g < kGroups && nrows[g] > 0; ++g)
        with_token_count<kTokens>(nt, [&](auto c) {
          k4_group_tile<F, decltype(c)::value>(x + t * x_row_bytes, x_row_bytes, ps + t * blocks * 4, blocks,
                                               u + g * blocks * kK4GroupBytes, nrows[g], y + t * ldy + rb + 8 * g, ldy);
        });
    }
  }
}

}  // namespace

const BlockKernel kKQuantsAvx2[] = {
    {DType::Q4_K, k4_lane_rows<Q4K>},
    {DType::Q5_K, k4_lane_rows<Q5K>},
    {DType::Q6_K, kq_rows<Q6K>},
    {DType::F32, nullptr},
};

}  // namespace r1lite
