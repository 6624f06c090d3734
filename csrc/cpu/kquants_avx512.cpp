// Avx512 kernels of GGUF's block formats q4_k, q5_k, q6_k (core/blocks.h), for
// cpu/matmul.cpp's dispatch (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything
// here has internal linkage except the list.
//
// One super-block (256 values) of a weight row against one ActQ8_K block of a token, all in
// integers until the block's end:
//   - the weight quants are made unsigned bytes, 64 values per 512-bit vector, in the order of the
//     values, so that they line up with the activations' qs as they are stored (no shuffles of
//     the activations);
//   - vpmaddubsw (u8 quant x s8 activation) gives int16 sums of adjacent pairs, and VNNI's
//     vpdpwssd multiplies them by the sub-block's scale (int16, broadcast over the sub-block's
//     lanes) and adds them to int32 lanes;
//   - what depends only on the activations' sums (q4_k/q5_k's mins, q6_k's -32) comes from the
//     block's bsums (ActQ8_K: sums of each 16 activations) with one vpmaddwd;
//   - the int32 lanes become floats once per block, times d_w·d_x (and dmin_w·d_x for the mins).
//
// int16 saturation (vpmaddubsw saturates; nothing else here does): the activations are
// |qs| <= 127 (d = max|x| / 127; -128 would do no harm either) and a quant is at most 15 (q4_k),
// 31 (q5_k) or 63 (q6_k), so a pair sums to at most 2·63·128 = 16128 < 32767. The int32
// lanes never come near 2^31: a whole block sums to at most 256·63·128·128 (q6_k: quant 63,
// |x| 128, |scale| 128) = 2.6e8, plus q6_k's 32·Σ|scale·bsum| <= 32·16·128·2048 = 1.3e8.
//
// Tiles are NR rows x NT tokens; a token's float results go through the same operations, in the
// same order, in a 4-token tile and in the 1-token path, so a row's result does not depend on
// its batch (the server batches requests and each must get what it gets alone).
#include <immintrin.h>

#include "core/blocks.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

// A block of weight rows stays in cache while every token streams past it.
constexpr int64_t kRowBlock = 16;
// Prefill tile: 2 rows x 4 tokens (int and float accumulators, 16 registers, plus each row's
// quants and scales).
constexpr int kPrefillRows = 2, kPrefillTokens = 4;

inline const ActQ8_K* act_block(const uint8_t* x, int64_t x_row_bytes, int t, int64_t b) {
  return reinterpret_cast<const ActQ8_K*>(x + t * x_row_bytes) + b;
}

// Ask for the block `bytes` long at p (its cache lines; a line it shares with the next block is
// asked for by the next one).
template <int64_t kBytes>
inline void prefetch_block(const void* p) {
  for (int64_t o = 0; o < kBytes; o += 64) _mm_prefetch(static_cast<const char*>(p) + o, _MM_HINT_T0);
}

// 32 bytes at p in both halves of a 512-bit vector.
inline __m512i broadcast32(const uint8_t* p) {
  return _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// pshufb indexes that put byte `lo` (in 128-bit lanes 0-1) or byte `hi` (lanes 2-3) of each lane
// into every 16-bit word, zero-extended.
inline __m512i word_index(int lo, int hi) {
  const __m512i a = _mm512_set1_epi32(int(0x80008000u | uint32_t(lo) | uint32_t(lo) << 16));
  const __m512i b = _mm512_set1_epi32(int(0x80008000u | uint32_t(hi) | uint32_t(hi) << 16));
  return _mm512_mask_blend_epi32(0xFF00, a, b);
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
  const __m128i high = _mm_srlv_epi32(b, _mm_set_epi32(2, 0, 2, 0));
  return _mm_ternarylogic_epi32(low, high, _mm_set_epi32(0x30303030, 0, 0x30303030, 0), 0xF8);  // a | (b & c)
}

template <class Block, bool kFifthBit>
struct K4Format {
  // q4_k/q5_k: value v = 64j + 32h + l (j < 4, h < 2, l < 32) is nibble h of qs[32j + l], in
  // sub-block 2j + h; q5_k adds bit 2j + h of qh[l] as 16.
  template <int NR, int NT>
  static void tile(const uint8_t* x, int64_t x_row_bytes, const uint8_t* w, int64_t w_row_bytes,
                   int64_t blocks, float* y, int64_t ldy) {
    // Vector j holds values 64j .. 64j+63 (sub-blocks 2j | 2j+1 in its 256-bit halves): the 32
    // bytes qs[32j ..] in both halves, shifted right by 0 in the low half and 4 in the high one.
    const __m512i nibble_shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
    const __m512i low4 = _mm512_set1_epi8(0x0f), sixteen = _mm512_set1_epi8(16);
    // the words of sub-block 2j's scale in the low half, of 2j+1 in the high half
    const __m512i scale_idx[4] = {word_index(0, 1), word_index(2, 3), word_index(4, 5), word_index(6, 7)};
    // q5_k's fifth bits of vector j: bit 2j of qh[l] (low half), 2j + 1 (high half)
    __m512i fifth[4];
    for (int j = 0; j < 4; ++j)
      fifth[j] = _mm512_mask_blend_epi8(0xFFFFFFFF00000000ull, _mm512_set1_epi8(char(1 << 2 * j)),
                                        _mm512_set1_epi8(char(1 << (2 * j + 1))));
    // each min twice, as words: min k against bsums 2k and 2k+1 (its 32 values)
    const __m256i min_idx = _mm256_setr_epi8(8, -128, 8, -128, 9, -128, 9, -128, 10, -128, 10, -128,
                                             11, -128, 11, -128, 12, -128, 12, -128, 13, -128, 13,
                                             -128, 14, -128, 14, -128, 15, -128, 15, -128);
    __m512 facc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) facc[r][t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const Block* wb[NR];
      __m512i sm[NR];  // [scales | mins] bytes in each 128-bit lane
      for (int r = 0; r < NR; ++r) {
        wb[r] = reinterpret_cast<const Block*>(w + r * w_row_bytes) + b;
        prefetch_block<sizeof(Block)>(reinterpret_cast<const Block*>(w + (r + NR) * w_row_bytes) + b);
        sm[r] = _mm512_broadcast_i32x4(unpack_k4_scales(wb[r]->scales));
      }
      const ActQ8_K* xb[NT];
      for (int t = 0; t < NT; ++t) xb[t] = act_block(x, x_row_bytes, t, b);
      __m512i acc[NR][NT];
      for (int r = 0; r < NR; ++r)
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_si512();
      for (int j = 0; j < 4; ++j) {
        __m512i q[NR], sc[NR];
        for (int r = 0; r < NR; ++r) {
          q[r] = _mm512_and_si512(_mm512_srlv_epi64(broadcast32(wb[r]->qs + 32 * j), nibble_shift), low4);
          if constexpr (kFifthBit) {
            const __mmask64 hb = _mm512_test_epi8_mask(broadcast32(wb[r]->qh), fifth[j]);
            q[r] = _mm512_mask_add_epi8(q[r], hb, q[r], sixteen);
          }
          sc[r] = _mm512_shuffle_epi8(sm[r], scale_idx[j]);
        }
        for (int t = 0; t < NT; ++t) {
          const __m512i xv = _mm512_loadu_si512(xb[t]->qs + 64 * j);
          for (int r = 0; r < NR; ++r)
            acc[r][t] = _mm512_dpwssd_epi32(acc[r][t], _mm512_maddubs_epi16(q[r], xv), sc[r]);
        }
      }
      // sum(scale·quant·x)·d·dx - sum(min·bsum)·dmin·dx
      for (int r = 0; r < NR; ++r) {
        const __m256i mins = _mm256_shuffle_epi8(_mm512_castsi512_si256(sm[r]), min_idx);
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(wb[r]->d));
        const __m512 neg_dmin = _mm512_set1_ps(-_cvtsh_ss(wb[r]->dmin));
        for (int t = 0; t < NT; ++t) {
          const __m512 dx = _mm512_set1_ps(xb[t]->d);
          const __m256i bsums = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb[t]->bsums));
          const __m256 m = _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, bsums));
          facc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][t]), _mm512_mul_ps(d, dx), facc[r][t]);
          facc[r][t] = _mm512_fmadd_ps(_mm512_zextps256_ps512(m), _mm512_mul_ps(neg_dmin, dx), facc[r][t]);
        }
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(facc[r][t]);
  }
};
using Q4K = K4Format<BlockQ4_K, false>;
using Q5K = K4Format<BlockQ5_K, true>;

// ---- q6_k ----
struct Q6K {
  // Half h (values 128h ..) of a BlockQ6_K: ql[64h .. 64h+63] holds values 128h + i (i < 64) in
  // its low nibbles and 128h + 64 + i in its high ones, so both are in value order as they are;
  // their 2 high bits are (qh[32h + l] >> 2s) & 3 for value 128h + 32s + l.
  template <int NR, int NT>
  static void tile(const uint8_t* x, int64_t x_row_bytes, const uint8_t* w, int64_t w_row_bytes,
                   int64_t blocks, float* y, int64_t ldy) {
    const __m512i low4 = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
    // qh in both halves, shifted right by 2 in the high half: then the low half of vector 2h
    // takes its high bits from bits 0-1, the high half from 2-3; vector 2h + 1 from 4-5 and 6-7.
    const __m512i qh_shift = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
    // vector c (values 64c ..) spans sub-blocks 4c .. 4c+3, one per 128-bit lane
    __m512i scale_idx[4];
    for (int c = 0; c < 4; ++c)
      scale_idx[c] = _mm512_set_epi16(4 * c + 3, 4 * c + 3, 4 * c + 3, 4 * c + 3, 4 * c + 3, 4 * c + 3,
                                      4 * c + 3, 4 * c + 3, 4 * c + 2, 4 * c + 2, 4 * c + 2, 4 * c + 2,
                                      4 * c + 2, 4 * c + 2, 4 * c + 2, 4 * c + 2, 4 * c + 1, 4 * c + 1,
                                      4 * c + 1, 4 * c + 1, 4 * c + 1, 4 * c + 1, 4 * c + 1, 4 * c + 1,
                                      4 * c, 4 * c, 4 * c, 4 * c, 4 * c, 4 * c, 4 * c, 4 * c);
    __m512 facc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) facc[r][t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const BlockQ6_K* wb[NR];
      __m512i scales[NR];
      __m256i start[NR][NT];
      const ActQ8_K* xb[NT];
      for (int t = 0; t < NT; ++t) xb[t] = act_block(x, x_row_bytes, t, b);
      for (int r = 0; r < NR; ++r) {
        wb[r] = reinterpret_cast<const BlockQ6_K*>(w + r * w_row_bytes) + b;
        prefetch_block<sizeof(BlockQ6_K)>(reinterpret_cast<const BlockQ6_K*>(w + (r + NR) * w_row_bytes) + b);
        const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb[r]->scales)));
        scales[r] = _mm512_castsi256_si512(s16);
        // (q - 32)·x = q·x - 32·x: -32·scale (|.| <= 4096, an int16) against each bsum
        const __m256i neg32 = _mm256_mullo_epi16(s16, _mm256_set1_epi16(-32));
        for (int t = 0; t < NT; ++t)
          start[r][t] = _mm256_madd_epi16(neg32, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb[t]->bsums)));
      }
      __m512i acc[NR][NT];
      for (int r = 0; r < NR; ++r)
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_zextsi256_si512(start[r][t]);
      for (int h = 0; h < 2; ++h) {
        for (int part = 0; part < 2; ++part) {  // vector c = 2h + part
          const int c = 2 * h + part;
          __m512i q[NR], sc[NR];
          for (int r = 0; r < NR; ++r) {
            const __m512i ql = _mm512_loadu_si512(wb[r]->ql + 64 * h);
            const __m512i hb = _mm512_srlv_epi64(broadcast32(wb[r]->qh + 32 * h), qh_shift);
            q[r] = part == 0 ? _mm512_ternarylogic_epi32(_mm512_and_si512(ql, low4), _mm512_slli_epi16(hb, 4), bits45, 0xF8)
                             : _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4), hb, bits45, 0xF8);
            sc[r] = _mm512_permutexvar_epi16(scale_idx[c], scales[r]);
          }
          for (int t = 0; t < NT; ++t) {
            const __m512i xv = _mm512_loadu_si512(xb[t]->qs + 64 * c);
            for (int r = 0; r < NR; ++r)
              acc[r][t] = _mm512_dpwssd_epi32(acc[r][t], _mm512_maddubs_epi16(q[r], xv), sc[r]);
          }
        }
      }
      for (int r = 0; r < NR; ++r) {
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(wb[r]->d));
        for (int t = 0; t < NT; ++t)
          facc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][t]), _mm512_mul_ps(d, _mm512_set1_ps(xb[t]->d)),
                                       facc[r][t]);
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(facc[r][t]);
  }
};

// Rows [r0, r1) in blocks of kRowBlock; in each, tokens 4 at a time through 2-row tiles, the
// rest one at a time through 4-row tiles.
template <class F>
void kq_rows(const void* xp, int64_t x_row_bytes, int64_t n_tok, const void* wp, int64_t w_row_bytes,
             int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* x = static_cast<const uint8_t*>(xp);
  const auto* w = static_cast<const uint8_t*>(wp);
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    int64_t t = 0;
    for (; t + kPrefillTokens <= n_tok; t += kPrefillTokens) {
      int64_t r = rb;
      for (; r + kPrefillRows <= re; r += kPrefillRows)
        F::template tile<kPrefillRows, kPrefillTokens>(x + t * x_row_bytes, x_row_bytes, w + r * w_row_bytes,
                                                       w_row_bytes, blocks, y + t * ldy + r, ldy);
      for (; r < re; ++r)
        F::template tile<1, kPrefillTokens>(x + t * x_row_bytes, x_row_bytes, w + r * w_row_bytes,
                                            w_row_bytes, blocks, y + t * ldy + r, ldy);
    }
    for (; t < n_tok; ++t) {
      int64_t r = rb;
      for (; r + 4 <= re; r += 4)
        F::template tile<4, 1>(x + t * x_row_bytes, x_row_bytes, w + r * w_row_bytes, w_row_bytes, blocks,
                               y + t * ldy + r, ldy);
      for (; r < re; ++r)
        F::template tile<1, 1>(x + t * x_row_bytes, x_row_bytes, w + r * w_row_bytes, w_row_bytes, blocks,
                               y + t * ldy + r, ldy);
    }
  }
}

}  // namespace

const BlockKernel kKQuantsAvx512[] = {
    {DType::Q4_K, kq_rows<Q4K>},
    {DType::Q5_K, kq_rows<Q5K>},
    {DType::Q6_K, kq_rows<Q6K>},
    {DType::F32, nullptr},
};

}  // namespace r1lite
