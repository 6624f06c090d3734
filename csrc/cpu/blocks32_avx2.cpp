// Avx2 kernels of GGUF's block formats gguf_q8_0, gguf_q4_0, q4_1, q5_0, q5_1, iq4_nl (core/blocks.h), for
// cpu/matmul.cpp's dispatch (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything
// here has internal linkage except the list.
//
// Eight blocks (256 values) per step, one block's 32 values per 256-bit vector, read straight
// from the blocks (ActQ8_32 activations as quantize_act_q8_32 wrote them):
//  - A weight block becomes 32 bytes in value order (byte j = value j; the nibble formats'
//    16 bytes give values 0-15 from their low nibbles, 16-31 from their high ones).
//  - maddubs multiplies unsigned by signed bytes and adds pairs into int16 with saturation, so
//    each format keeps its pair sums below 2^15 (|x| <= 127, blocks.h):
//      q4_0, q4_1 (nibbles n <= 15), q5_0, q5_1 (5-bit q <= 31) stay unsigned:
//        |pair| <= 2 * 31 * 127 = 7874;
//      q8_0 (-128..127) and iq4_nl (table values -127..113) are signed: |w| times x with w's
//        sign moved onto x (sign_epi8): |pair| <= 2 * 128 * 127 = 32512 < 32767.
//    madd with ones then widens the pairs to 8 int32 lanes.
//  - The int32 dot times d_w·d_x is accumulated in f32 lanes. The eight blocks' f16 scales are
//    gathered into one vector with scalar loads (integer units, idle here) and converted at once;
//    the products d_w·d_x of the eight blocks go to a small table, and each block broadcasts its
//    own from there (a load, no arithmetic): per block and (row, token) the float work is one
//    conversion and one fma.
//  - The second term of each block is d_x·sum(x) times a per-block weight factor m2: the min
//    formats' min m (q4_1, q5_1), the offset formats' -c·d (q4_0: c = 8, q5_0: 16; the nibbles
//    stay unsigned, (u - c)·x = u·x - c·sum(x)). Eight blocks of it are one fma into the same
//    accumulator: its lanes are summed at the end anyway.
// The float operations for a (row, token) are the same, in the same order, for every tile size,
// so a token's result does not depend on its batch.
#include <immintrin.h>

#include <cstring>

#include "core/blocks.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

inline uint16_t u16_at(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// The 16 nibble bytes at p as 32 bytes in value order: low nibbles (values 0-15) in the low
// 128 bits, high nibbles (values 16-31) in the high 128.
inline __m256i nibbles(const uint8_t* p) {
  const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256i shifted = _mm256_blend_epi32(v, _mm256_srli_epi16(v, 4), 0xF0);
  return _mm256_and_si256(shifted, _mm256_set1_epi8(0x0f));
}

// q5: 0x10 in byte j where bit j of the 32-bit qh at p is set. Byte j takes qh byte j/8, keeps
// bit j%8 (or-ing every other bit on), and compares with all ones.
inline __m256i fifth_bits(const uint8_t* p) {
  uint32_t qh;
  std::memcpy(&qh, p, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(int(qh)),
      _mm256_setr_epi64x(0x0000000000000000ll, 0x0101010101010101ll, 0x0202020202020202ll, 0x0303030303030303ll));
  const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfell);  // every bit but bit j%8
  const __m256i set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi8(-1));
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

// The formats: kBytes per block, the f16 scale d at byte 0 and (kMin) the min at byte 2, quants()
// the 32 values in value order. kSigned: signed values, dotted through the sign trick; else
// unsigned with offset kOffset (0, 8 or 16). The nibble formats take the tuning of Nibble.
struct Nibble {
  // scales of 8 blocks gathered at once; two accumulator chains per (row, token): one chain
  // waits out each fma's latency per block; 1-row tiles (4 tokens x 2 chains fill the registers)
  static constexpr bool kGatherScales = true;
  static constexpr int kChains = 2, kPrefillRows = 1;
};
struct Q8_0F {
  static constexpr int kBytes = 34, kOffset = 0;
  static constexpr bool kSigned = true, kMin = false;
  // q8_0 (twice the bytes per value, decode memory-bound) measured slower with the gathered
  // scales and two chains (decode 1.1x, 4-9 tokens 1.2-1.4x the time): per-block scalar scales,
  // one chain, 2-row tiles, as it was
  static constexpr bool kGatherScales = false;
  static constexpr int kChains = 1, kPrefillRows = 2;
  static __m256i quants(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2)); }
};
struct Q4_0F : Nibble {
  static constexpr int kBytes = 18, kOffset = 8;
  static constexpr bool kSigned = false, kMin = false;
  static __m256i quants(const uint8_t* p) { return nibbles(p + 2); }
};
struct Q4_1F : Nibble {
  static constexpr int kBytes = 20, kOffset = 0;
  static constexpr bool kSigned = false, kMin = true;
  static __m256i quants(const uint8_t* p) { return nibbles(p + 4); }
};
struct Q5_0F : Nibble {
  static constexpr int kBytes = 22, kOffset = 16;
  static constexpr bool kSigned = false, kMin = false;
  static __m256i quants(const uint8_t* p) { return _mm256_or_si256(nibbles(p + 6), fifth_bits(p + 2)); }
};
struct Q5_1F : Nibble {
  static constexpr int kBytes = 24, kOffset = 0;
  static constexpr bool kSigned = false, kMin = true;
  static __m256i quants(const uint8_t* p) { return _mm256_or_si256(nibbles(p + 8), fifth_bits(p + 4)); }
};
struct IQ4NLF : Nibble {
  static constexpr int kBytes = 18, kOffset = 0;
  static constexpr bool kSigned = true, kMin = false;
  static __m256i quants(const uint8_t* p) {
    // nibble -> kIq4nlValues[nibble], an in-lane byte shuffle of the table
    const __m256i table = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113));
    return _mm256_shuffle_epi8(table, nibbles(p + 2));
  }
};

// Lanes i < n all ones.
inline __m256i lanes_below(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The f16 words at byte off of n <= 8 consecutive blocks at p (kBytes apart) as floats (lanes
// past n: 0).
template <int kBytes, int kN>
inline __m256 f16_words(const uint8_t* p, int off, int n) {
  uint64_t lo = 0, hi = 0;
  for (int j = 0; j < (kN < 4 ? kN : 4); ++j)
    if (j < n) lo |= uint64_t(u16_at(p + j * kBytes + off)) << (16 * j);
  for (int j = 4; j < kN; ++j)
    if (j < n) hi |= uint64_t(u16_at(p + j * kBytes + off)) << (16 * (j - 4));
  return _mm256_cvtph_ps(_mm_set_epi64x(int64_t(hi), int64_t(lo)));
}

// 8 int32 lanes summing to w·x (unsigned formats: u·x, the offset handled with the second term).
// For signed formats u = |w| (computed once per row).
template <class F>
inline __m256i dot(__m256i u, __m256i w, __m256i x) {
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (F::kSigned) return _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_sign_epi8(x, w)), ones);
  else return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
}

#include "cpu/block_kernel_helpers.inc"

// Per token, its blocks' d_x and d_x·sum(x) as float arrays (fx[t][0][b], fx[t][1][b]), once
// per call.
inline const float* act_factors(const uint8_t* x, int64_t x_row_bytes, int64_t n_tok, int64_t blocks) {
  thread_local KernelScratch factors;
  auto* f = reinterpret_cast<float*>(factors.reserve(size_t(n_tok * 2 * blocks) * sizeof(float)));
  for (int64_t t = 0; t < n_tok; ++t) {
    const auto* a = reinterpret_cast<const ActQ8_32*>(x + t * x_row_bytes);
    for (int64_t b = 0; b < blocks; ++b) {
      f[(2 * t) * blocks + b] = a[b].d;
      f[(2 * t + 1) * blocks + b] = a[b].d * float(a[b].sum);
    }
  }
  return f;
}

// kN blocks from block b (n of them exist; kN = 8 but for a row's last blocks) for NR rows x NT
// tokens into acc.
template <class F, int NR, int NT, int kN>
inline void step(const uint8_t* x, int64_t x_row_bytes, const float* fx, int64_t blocks, const uint8_t* w,
                 int64_t stride, int64_t b, int n, __m256 (&acc)[NR][NT][F::kChains]) {
  constexpr int kChains = F::kChains;
  constexpr bool kSecond = F::kMin || F::kOffset != 0;
  alignas(32) float scale[NR][NT][8];  // kGatherScales: d_w·d_x of each block
  for (int r = 0; r < NR && F::kGatherScales; ++r) {
    const uint8_t* p = w + r * stride + b * F::kBytes;
    const __m256 dw = f16_words<F::kBytes, kN>(p, 0, n);
    __m256 m2 = _mm256_setzero_ps();
    if constexpr (F::kMin) m2 = f16_words<F::kBytes, kN>(p, 2, n);
    if constexpr (F::kOffset != 0) m2 = _mm256_mul_ps(dw, _mm256_set1_ps(-float(F::kOffset)));
    for (int t = 0; t < NT; ++t) {
      const float* f = fx + 2 * t * blocks + b;
      const __m256 dx = kN == 8 ? _mm256_loadu_ps(f) : _mm256_maskload_ps(f, lanes_below(n));
      _mm256_store_ps(scale[r][t], _mm256_mul_ps(dw, dx));
      if constexpr (kSecond) {
        const __m256 dxs = kN == 8 ? _mm256_loadu_ps(f + blocks) : _mm256_maskload_ps(f + blocks, lanes_below(n));
        acc[r][t][0] = _mm256_fmadd_ps(m2, dxs, acc[r][t][0]);
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < kN; ++j) {
    if (kN < 8 && j >= n) break;
    __m256i wv[NR], u[NR];
    for (int r = 0; r < NR; ++r) {
      const uint8_t* p = w + r * stride + (b + j) * F::kBytes;
      // what the tile reads next (block_kernel_helpers.inc): keeps reads in flight
      _mm_prefetch(reinterpret_cast<const char*>(NR == 1 ? p + kStreamAhead : p + NR * stride + 256), _MM_HINT_T0);
      wv[r] = F::quants(p);
      u[r] = F::kSigned ? _mm256_sign_epi8(wv[r], wv[r]) : wv[r];
    }
    for (int t = 0; t < NT; ++t) {
      const auto* a = reinterpret_cast<const ActQ8_32*>(x + t * x_row_bytes) + b + j;
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a->qs));
      for (int r = 0; r < NR; ++r) {
        const __m256 sc = F::kGatherScales
                              ? _mm256_broadcast_ss(&scale[r][t][j])
                              : _mm256_set1_ps(f16(u16_at(w + r * stride + (b + j) * F::kBytes)) * fx[2 * t * blocks + b + j]);
        acc[r][t][j % kChains] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot<F>(u[r], wv[r], xv)), sc, acc[r][t][j % kChains]);
      }
    }
  }
}

// NR rows x NT tokens over a row's blocks. x: token 0's activation row; tokens x_row_bytes apart;
// fx: token 0's act_factors.
template <class F, int NR, int NT>
void tile(const uint8_t* x, int64_t x_row_bytes, const float* fx, int64_t blocks, const uint8_t* w, int64_t stride,
          float* y, int64_t ldy) {
  constexpr int kChains = F::kChains;
  __m256 acc[NR][NT][kChains];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t)
      for (int c = 0; c < kChains; ++c) acc[r][t][c] = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 8 <= blocks; b += 8) step<F, NR, NT, 8>(x, x_row_bytes, fx, blocks, w, stride, b, 8, acc);
  if (b < blocks) step<F, NR, NT, 7>(x, x_row_bytes, fx, blocks, w, stride, b, int(blocks - b), acc);
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) {
      __m256 sum = acc[r][t][0];
      for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[r][t][c]);
      y[t * ldy + r] = hsum8(sum);
    }
}

// NT tokens against the rows [rb, re). Rows already in cache (an earlier token tile of this
// call read them) go F::kPrefillRows at a time; rows still in DRAM one at a time, the stream ahead
// prefetched: from DRAM, several rows' streams at once read at half the bandwidth (measured 9-10
// vs 20-22 GB/s on one thread for q4_k / q6_k).
template <class F, int NT>
void token_tiles(const uint8_t* x, int64_t x_row_bytes, const float* fx, int64_t blocks, const uint8_t* w,
                 int64_t stride, int64_t rb, int64_t re, bool cached, float* y, int64_t ldy) {
  int64_t r = rb;
  if (cached)
    for (; r + F::kPrefillRows <= re; r += F::kPrefillRows)
      tile<F, F::kPrefillRows, NT>(x, x_row_bytes, fx, blocks, w + r * stride, stride, y + r, ldy);
  for (; r < re; ++r) tile<F, 1, NT>(x, x_row_bytes, fx, blocks, w + r * stride, stride, y + r, ldy);
}

template <class F>
void rows(const void* xp, int64_t x_row_bytes, int64_t n_tok, const void* wp, int64_t stride,
          int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* w = static_cast<const uint8_t*>(wp);
  const auto* x = static_cast<const uint8_t*>(xp);
  const float* fx = act_factors(x, x_row_bytes, n_tok, blocks);
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    // tokens 4 at a time, the last 1-4 in one tile (5 as 3 + 2: a 1-token tile unpacks each
    // block for one token, measured at 1.4x the cost of a token in a larger tile)
    for (int64_t t = 0; t < n_tok;) {
      const int64_t left = n_tok - t;
      const int nt = left > 5 ? 4 : left == 5 ? 3 : int(left);
      const uint8_t* xt = x + t * x_row_bytes;
      const float* ft = fx + 2 * t * blocks;
      switch (nt) {
        case 1: token_tiles<F, 1>(xt, x_row_bytes, ft, blocks, w, stride, rb, re, t > 0, y + t * ldy, ldy); break;
        case 2: token_tiles<F, 2>(xt, x_row_bytes, ft, blocks, w, stride, rb, re, t > 0, y + t * ldy, ldy); break;
        case 3: token_tiles<F, 3>(xt, x_row_bytes, ft, blocks, w, stride, rb, re, t > 0, y + t * ldy, ldy); break;
        default: token_tiles<F, 4>(xt, x_row_bytes, ft, blocks, w, stride, rb, re, t > 0, y + t * ldy, ldy); break;
      }
      t += nt;
    }
  }
}

}  // namespace

const BlockKernel kBlocks32Avx2[] = {
    {DType::GGUF_Q8_0, rows<Q8_0F>},
    {DType::GGUF_Q4_0, rows<Q4_0F>},
    {DType::Q4_1, rows<Q4_1F>},
    {DType::Q5_0, rows<Q5_0F>},
    {DType::Q5_1, rows<Q5_1F>},
    {DType::IQ4_NL, rows<IQ4NLF>},
    {DType::F32, nullptr},
};

}  // namespace r1lite
