// Avx2 kernels of GGUF's block formats q2_k, q3_k, iq4_xs (core/blocks.h), for
// cpu/matmul.cpp's dispatch (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything
// here has internal linkage except the list.
//
// Every kernel computes, per super-block of 256 values, the exact integer dot of the weights'
// integer quants (times their integer sub-block scales) with the activations' int8 quants, and
// adds it times d_w * d_x to an f32 accumulator of its (row, token); the per-(row, token)
// arithmetic is the same in every tile shape, so a token's result does not depend on its batch.
// A block is walked in 8 pieces of 32 values; the u8·s8 products go through maddubs (int16
// pairs; each format's comment bounds them below 2^15) and a madd with the int16 sub-block
// scales into int32.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/blocks.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

#include "cpu/block_kernel_helpers.inc"

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// For piece p = 4h + s of q2_k / q3_k (values 128h + 32s + l, l < 32: bits 2s of qs[32h + l];
// sub-blocks 8h + 2s in the low 128-bit lane, 8h + 2s + 1 in the high one): the int16 scale of
// each maddubs lane, from `by_parity` (low lane: the even sub-blocks' scales 0, 2, .., 14 as
// int16; high lane: the odd ones), picking element 4h + s in both lanes.
inline __m256i piece_scales(__m256i by_parity, int p) {
  return _mm256_shuffle_epi8(by_parity, _mm256_set1_epi16(int16_t((2 * p + 1) << 8 | 2 * p)));
}
// 16 int8 scales in sub-block order -> the by_parity int16 vector (signed or not)
inline __m128i evens_then_odds(__m128i sc8) {
  return _mm_shuffle_epi8(sc8, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
}

// ---- q3_k ----
// value = d * (sc - 32) * q, q = low2 - 4 * (hmask bit clear) in [-4, 3]. With u = low2 + 4 *
// hbit in [0, 7] (unsigned, as maddubs wants), q = u - 4, so per sub-block j of 16:
//   sum q·x = sum u·x - 4 * bsums[j]
// int16 bounds: maddubs pairs |u·x + u·x| <= 2·7·127 = 1778 (no saturation); the madd with
// scales |sc| <= 32 and the -4·sc · bsums madd (|4·sc| <= 128, |bsums| <= 2032) are int32.
struct Q3K {
  static constexpr int64_t kBlockBytes = sizeof(BlockQ3_K);
  struct Block {
    __m256i by_parity;  // signed scales (see piece_scales)
    __m256i neg4sc;     // -4 * scale, sub-block order, int16
    float d;
  };
  static void start(const uint8_t* p, Block& blk) {
    const auto* b = reinterpret_cast<const BlockQ3_K*>(p);
    // The 16 6-bit scales (blocks.h): low 4 bits from bytes 0-7 (low nibble j < 8, high nibble
    // j >= 8), high 2 bits of scale j from byte 8 + j % 4 at bit 2 * (j / 4).
    uint64_t lo8;
    uint32_t hi4;
    std::memcpy(&lo8, b->scales, 8);
    std::memcpy(&hi4, b->scales + 8, 4);
    const __m128i raw = _mm_cvtsi64_si128(int64_t(lo8));
    const __m128i low4 = _mm_and_si128(_mm_unpacklo_epi64(raw, _mm_srli_epi16(raw, 4)), _mm_set1_epi8(0x0f));
    const __m128i high2 = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32(int(hi4)), _mm_setr_epi32(0, 2, 4, 6)),
                                        _mm_set1_epi8(3));
    const __m128i sc8 = _mm_sub_epi8(_mm_or_si128(low4, _mm_slli_epi32(high2, 4)), _mm_set1_epi8(32));
    blk.by_parity = _mm256_cvtepi8_epi16(evens_then_odds(sc8));
    blk.neg4sc = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc8), 2));
    blk.d = f16(b->d);
  }
  static __m256i init(const Block& blk, const ActQ8_K* a) {
    return _mm256_madd_epi16(blk.neg4sc, load256(a->bsums));
  }
  // piece p's u values and lane scales
  static void piece(const uint8_t* p, const Block& blk, int pc, __m256i* u, __m256i* sc) {
    const auto* b = reinterpret_cast<const BlockQ3_K*>(p);
    const int h = pc / 4, s = pc % 4;
    const __m256i low2 = _mm256_and_si256(_mm256_srli_epi16(load256(b->qs + 32 * h), 2 * s), _mm256_set1_epi8(3));
    // bit 4h + s of hmask[l], moved to bit 2
    const __m256i hm = load256(b->hmask);
    const int shift = 4 * h + s - 2;
    const __m256i hbit = _mm256_and_si256(shift >= 0 ? _mm256_srli_epi16(hm, shift) : _mm256_slli_epi16(hm, -shift),
                                          _mm256_set1_epi8(4));
    *u = _mm256_or_si256(low2, hbit);
    *sc = piece_scales(blk.by_parity, pc);
  }
  static __m256 finish(const Block& blk, const ActQ8_K* a, __m256i sum, __m256 acc) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(blk.d * a->d), acc);
  }
};

// ---- q2_k ----
// value = d * sc * q - dmin * m, q in [0, 3], sc and m in [0, 15] (scales[j]: low nibble sc,
// high nibble m). maddubs pairs <= 2·3·127 (no saturation); the mins term
// dmin · sum_j m_j · bsums_j is one madd (|m · bsums| pairs <= 2·15·2032 < 2^31).
struct Q2K {
  static constexpr int64_t kBlockBytes = sizeof(BlockQ2_K);
  struct Block {
    __m256i by_parity;  // scales (see piece_scales)
    __m256i m16;        // mins, sub-block order, int16
    float d, dmin;
  };
  static void start(const uint8_t* p, Block& blk) {
    const auto* b = reinterpret_cast<const BlockQ2_K*>(p);
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales));
    const __m128i nib = _mm_set1_epi8(0x0f);
    blk.by_parity = _mm256_cvtepu8_epi16(evens_then_odds(_mm_and_si128(raw, nib)));
    blk.m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), nib));
    blk.d = f16(b->d);
    blk.dmin = f16(b->dmin);
  }
  static __m256i init(const Block&, const ActQ8_K*) { return _mm256_setzero_si256(); }
  static void piece(const uint8_t* p, const Block& blk, int pc, __m256i* u, __m256i* sc) {
    const auto* b = reinterpret_cast<const BlockQ2_K*>(p);
    const int h = pc / 4, s = pc % 4;
    *u = _mm256_and_si256(_mm256_srli_epi16(load256(b->qs + 32 * h), 2 * s), _mm256_set1_epi8(3));
    *sc = piece_scales(blk.by_parity, pc);
  }
  static __m256 finish(const Block& blk, const ActQ8_K* a, __m256i sum, __m256 acc) {
    const __m256 mins = _mm256_cvtepi32_ps(_mm256_madd_epi16(blk.m16, load256(a->bsums)));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(blk.d * a->d), acc);
    return _mm256_fmadd_ps(mins, _mm256_set1_ps(-blk.dmin * a->d), acc);
  }
};

// q2_k / q3_k: NR rows x NT tokens, each block walked in its 8 pieces; piece p of the
// activations is simply qs[32p, 32p + 32).
template <class F, int NR, int NT>
void k2_tile(const void* x, int64_t x_row_bytes, const uint8_t* w, int64_t w_row_bytes, int64_t blocks,
             float* y, int64_t ldy) {
  __m256 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  const ActQ8_K* xt[NT];
  for (int t = 0; t < NT; ++t)
    xt[t] = reinterpret_cast<const ActQ8_K*>(static_cast<const uint8_t*>(x) + t * x_row_bytes);
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* wb = w + b * F::kBlockBytes;
    typename F::Block blk[NR];
    __m256i sum[NR][NT];
    for (int r = 0; r < NR; ++r) {
      prefetch_next<F::kBlockBytes, NR>(wb + r * w_row_bytes, w_row_bytes);
      F::start(wb + r * w_row_bytes, blk[r]);
      for (int t = 0; t < NT; ++t) sum[r][t] = F::init(blk[r], xt[t] + b);
    }
    for (int pc = 0; pc < 8; ++pc) {
      for (int r = 0; r < NR; ++r) {
        __m256i u, sc;
        F::piece(wb + r * w_row_bytes, blk[r], pc, &u, &sc);
        for (int t = 0; t < NT; ++t) {
          const __m256i prod = _mm256_maddubs_epi16(u, load256(xt[t][b].qs + 32 * pc));
          sum[r][t] = _mm256_add_epi32(sum[r][t], _mm256_madd_epi16(prod, sc));
        }
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) acc[r][t] = F::finish(blk[r], xt[t] + b, sum[r][t], acc[r][t]);
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) {
      __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[r][t]), _mm256_extractf128_ps(acc[r][t], 1));
      s = _mm_add_ps(s, _mm_movehl_ps(s, s));
      s = _mm_add_ss(s, _mm_movehdup_ps(s));
      y[t * ldy + r] = _mm_cvtss_f32(s);
    }
}

// ---- iq4_xs ----
// value = d * (ls - 32) * table[nibble], table in [-127, 113] (never 0). The signed table goes
// through maddubs as |t| · sign(x, t): pairs <= 2·127·127 = 32258 < 2^15 (|x| <= 127), then a
// madd with the int16 sub-block scale into int32. Piece p covers sub-blocks 2p, 2p+1: the 32
// qs bytes qs[32p, 32p + 32) give their first 16 values as low nibbles (sub-block 2p in the low
// lane, 2p+1 in the high) and their last 16 as high nibbles; the activations are arranged once
// per call in the same order (per piece: the first-16 halves, then the last-16 halves), then d.
constexpr int64_t kIq4ActBytes = 260, kIq4D = 256;

const uint8_t* arrange_iq4(const void* x, int64_t x_row_bytes, int64_t n_tok, int64_t blocks) {
  thread_local KernelScratch buf;
  uint8_t* out = buf.reserve(size_t(n_tok * blocks * kIq4ActBytes));
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t b = 0; b < blocks; ++b) {
      const ActQ8_K* a = reinterpret_cast<const ActQ8_K*>(static_cast<const uint8_t*>(x) + t * x_row_bytes) + b;
      uint8_t* dst = out + (t * blocks + b) * kIq4ActBytes;
      for (int p = 0; p < 4; ++p) {
        const __m256i s0 = load256(a->qs + 64 * p), s1 = load256(a->qs + 64 * p + 32);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 64 * p), _mm256_permute2x128_si256(s0, s1, 0x20));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 64 * p + 32), _mm256_permute2x128_si256(s0, s1, 0x31));
      }
      std::memcpy(dst + kIq4D, &a->d, 4);
    }
  return out;
}

template <int NR, int NT>
void iq4_tile(const uint8_t* xa, int64_t xa_stride, const uint8_t* w, int64_t w_row_bytes, int64_t blocks,
              float* y, int64_t ldy) {
  __m256 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  const __m256i table = _mm256_broadcastsi128_si256(
      _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113));
  const __m256i nib = _mm256_set1_epi8(0x0f);
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* wb = w + b * int64_t(sizeof(BlockIQ4_XS));
    __m256i sc32[NR];  // ls - 32 of sub-block i in int32 lane i, both int16 halves
    float d[NR];
    __m256i sum[NR][NT];
    for (int r = 0; r < NR; ++r) {
      prefetch_next<sizeof(BlockIQ4_XS), NR>(wb + r * w_row_bytes, w_row_bytes);
      const auto* blk = reinterpret_cast<const BlockIQ4_XS*>(wb + r * w_row_bytes);
      // scale of sub-block i: bits 4i..4i+3 of the 4 scales_l bytes, bits 2i, 2i+1 of scales_h
      uint32_t sl;
      std::memcpy(&sl, blk->scales_l, 4);
      const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
      const __m256i low4 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(sl)), _mm256_slli_epi32(lanes, 2)),
                                            _mm256_set1_epi32(0x0f));
      const __m256i high2 = _mm256_and_si256(
          _mm256_srlv_epi32(_mm256_set1_epi32(int(uint32_t(blk->scales_h) << 4)), _mm256_slli_epi32(lanes, 1)),
          _mm256_set1_epi32(0x30));
      const __m256i ls = _mm256_sub_epi32(_mm256_or_si256(low4, high2), _mm256_set1_epi32(32));
      // the int16 in both halves of each int32 (so that a 32-bit broadcast gives 16 int16)
      sc32[r] = _mm256_or_si256(_mm256_and_si256(ls, _mm256_set1_epi32(0xffff)), _mm256_slli_epi32(ls, 16));
      d[r] = f16(blk->d);
      for (int t = 0; t < NT; ++t) sum[r][t] = _mm256_setzero_si256();
    }
    for (int p = 0; p < 4; ++p) {
      for (int r = 0; r < NR; ++r) {
        const __m256i q = load256(reinterpret_cast<const BlockIQ4_XS*>(wb + r * w_row_bytes)->qs + 32 * p);
        const __m256i t_lo = _mm256_shuffle_epi8(table, _mm256_and_si256(q, nib));
        const __m256i t_hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q, 4), nib));
        const __m256i a_lo = _mm256_abs_epi8(t_lo), a_hi = _mm256_abs_epi8(t_hi);
        const __m256i sc = _mm256_permutevar8x32_epi32(sc32[r], _mm256_setr_epi32(2 * p, 2 * p, 2 * p, 2 * p,
                                                                                   2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1));
        for (int t = 0; t < NT; ++t) {
          const uint8_t* xb = xa + t * xa_stride + b * kIq4ActBytes + 64 * p;
          const __m256i p_lo = _mm256_maddubs_epi16(a_lo, _mm256_sign_epi8(load256(xb), t_lo));
          const __m256i p_hi = _mm256_maddubs_epi16(a_hi, _mm256_sign_epi8(load256(xb + 32), t_hi));
          sum[r][t] = _mm256_add_epi32(sum[r][t], _mm256_add_epi32(_mm256_madd_epi16(p_lo, sc), _mm256_madd_epi16(p_hi, sc)));
        }
      }
    }
    for (int t = 0; t < NT; ++t) {
      float dx;
      std::memcpy(&dx, xa + t * xa_stride + b * kIq4ActBytes + kIq4D, 4);
      for (int r = 0; r < NR; ++r)
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r][t]), _mm256_set1_ps(d[r] * dx), acc[r][t]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) {
      __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[r][t]), _mm256_extractf128_ps(acc[r][t], 1));
      s = _mm_add_ps(s, _mm_movehl_ps(s, s));
      s = _mm_add_ss(s, _mm_movehdup_ps(s));
      y[t * ldy + r] = _mm_cvtss_f32(s);
    }
}

// ---- row loops ----
// Row blocks of kRowBlock stay in cache while the tokens stream past; tiles of kPrefillRows x
// kPrefillTokens, one-token tiles of kDecodeRows rows.
constexpr int kPrefillTokens = 4, kPrefillRows = 2, kDecodeRows = 1;

template <class F>
void k2_kernel(const void* x, int64_t x_row_bytes, int64_t n_tok, const void* w, int64_t w_row_bytes,
               int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* wp = static_cast<const uint8_t*>(w);
  const auto* xp = static_cast<const uint8_t*>(x);
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    int64_t t = 0;
    for (; t + kPrefillTokens <= n_tok; t += kPrefillTokens) {
      int64_t r = rb;
      for (; r + kPrefillRows <= re; r += kPrefillRows)
        k2_tile<F, kPrefillRows, kPrefillTokens>(xp + t * x_row_bytes, x_row_bytes, wp + r * w_row_bytes,
                                                 w_row_bytes, blocks, y + t * ldy + r, ldy);
      for (; r < re; ++r)
        k2_tile<F, 1, kPrefillTokens>(xp + t * x_row_bytes, x_row_bytes, wp + r * w_row_bytes, w_row_bytes, blocks,
                                      y + t * ldy + r, ldy);
    }
    for (; t < n_tok; ++t) {
      int64_t r = rb;
      for (; r + kDecodeRows <= re; r += kDecodeRows)
        k2_tile<F, kDecodeRows, 1>(xp + t * x_row_bytes, x_row_bytes, wp + r * w_row_bytes, w_row_bytes, blocks,
                                   y + t * ldy + r, 0);
      for (; r < re; ++r)
        k2_tile<F, 1, 1>(xp + t * x_row_bytes, x_row_bytes, wp + r * w_row_bytes, w_row_bytes, blocks, y + t * ldy + r, 0);
    }
  }
}

void iq4_xs_kernel(const void* x, int64_t x_row_bytes, int64_t n_tok, const void* w, int64_t w_row_bytes,
                   int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const uint8_t* xa = arrange_iq4(x, x_row_bytes, n_tok, blocks);
  const int64_t xs = blocks * kIq4ActBytes;
  const auto* wp = static_cast<const uint8_t*>(w);
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    int64_t t = 0;
    for (; t + kPrefillTokens <= n_tok; t += kPrefillTokens) {
      int64_t r = rb;
      for (; r + kPrefillRows <= re; r += kPrefillRows)
        iq4_tile<kPrefillRows, kPrefillTokens>(xa + t * xs, xs, wp + r * w_row_bytes, w_row_bytes, blocks,
                                               y + t * ldy + r, ldy);
      for (; r < re; ++r)
        iq4_tile<1, kPrefillTokens>(xa + t * xs, xs, wp + r * w_row_bytes, w_row_bytes, blocks, y + t * ldy + r, ldy);
    }
    for (; t < n_tok; ++t) {
      int64_t r = rb;
      for (; r + kDecodeRows <= re; r += kDecodeRows)
        iq4_tile<kDecodeRows, 1>(xa + t * xs, xs, wp + r * w_row_bytes, w_row_bytes, blocks, y + t * ldy + r, 0);
      for (; r < re; ++r) iq4_tile<1, 1>(xa + t * xs, xs, wp + r * w_row_bytes, w_row_bytes, blocks, y + t * ldy + r, 0);
    }
  }
}

}  // namespace

const BlockKernel kKQuantsLowAvx2[] = {
    {DType::Q3_K, k2_kernel<Q3K>},
    {DType::Q2_K, k2_kernel<Q2K>},
    {DType::IQ4_XS, iq4_xs_kernel},
    {DType::F32, nullptr},
};

}  // namespace r1lite
