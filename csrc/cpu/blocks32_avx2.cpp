// Avx2 kernels of GGUF's block formats gguf_q8_0, gguf_q4_0, q4_1, q5_0, q5_1, iq4_nl (core/blocks.h), for
// cpu/matmul.cpp's dispatch (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything
// here has internal linkage except the list.
//
// One block (32 values) per step, in 256-bit vectors, read straight from the blocks
// (ActQ8_32 activations as quantize_act_q8_32 wrote them):
//  - A weight block becomes 32 bytes in value order (byte j = value j; the nibble formats'
//    16 bytes give values 0-15 from their low nibbles, 16-31 from their high ones).
//  - maddubs multiplies unsigned by signed bytes and adds pairs into int16 with saturation, so
//    each format keeps its pair sums below 2^15 (|x| <= 127, blocks.h):
//      q4_0, q4_1 (nibbles n <= 15), q5_0, q5_1 (5-bit q <= 31) stay unsigned:
//        |pair| <= 2 * 31 * 127 = 7874;
//      q8_0 (-128..127) and iq4_nl (table values -127..113) are signed: |w| times x with w's
//        sign moved onto x (sign_epi8): |pair| <= 2 * 128 * 127 = 32512 < 32767.
//    madd with ones then widens the pairs to 8 int32 lanes.
//  - The unsigned formats' offsets (q4_0: 8, q5_0: 16) are removed with the activations' block
//    sum: (u - c)·x = u·x - c·sum(x), as -(c/8)·sum(x) added to each of the 8 lanes.
//  - The int32 dot times d_w·d_x (one f32 product per block, broadcast) is accumulated in f32;
//    the min formats (q4_1, q5_1) add m_w·(d_x·sum(x)) per block in a scalar accumulator.
// The decode tile (1 token) and the prefill tile (4 tokens) do the same float operations in the
// same order for each (row, token), so a token's result does not depend on its batch.
#include <immintrin.h>

#include <cstring>

#include "core/blocks.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
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

// A block's weights as the tile reads them: w (32 bytes in value order; unsigned or signed per
// the format), d, and for the min formats m.
struct BlockW {
  __m256i w;
  float d, m;
};

// The formats. kSigned: w is signed (dotted through the sign trick); else unsigned with offset
// kOffset (0, 8 or 16).
struct Q8_0F {
  static constexpr int kBytes = 34, kOffset = 0;
  static constexpr bool kSigned = true, kMin = false;
  static void load(const uint8_t* p, BlockW& b) {
    b.w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
    b.d = h2f(u16_at(p));
  }
};
struct Q4_0F {
  static constexpr int kBytes = 18, kOffset = 8;
  static constexpr bool kSigned = false, kMin = false;
  static void load(const uint8_t* p, BlockW& b) {
    b.w = nibbles(p + 2);
    b.d = h2f(u16_at(p));
  }
};
struct Q4_1F {
  static constexpr int kBytes = 20, kOffset = 0;
  static constexpr bool kSigned = false, kMin = true;
  static void load(const uint8_t* p, BlockW& b) {
    b.w = nibbles(p + 4);
    b.d = h2f(u16_at(p));
    b.m = h2f(u16_at(p + 2));
  }
};
struct Q5_0F {
  static constexpr int kBytes = 22, kOffset = 16;
  static constexpr bool kSigned = false, kMin = false;
  static void load(const uint8_t* p, BlockW& b) {
    b.w = _mm256_or_si256(nibbles(p + 6), fifth_bits(p + 2));
    b.d = h2f(u16_at(p));
  }
};
struct Q5_1F {
  static constexpr int kBytes = 24, kOffset = 0;
  static constexpr bool kSigned = false, kMin = true;
  static void load(const uint8_t* p, BlockW& b) {
    b.w = _mm256_or_si256(nibbles(p + 8), fifth_bits(p + 4));
    b.d = h2f(u16_at(p));
    b.m = h2f(u16_at(p + 2));
  }
};
struct IQ4NLF {
  static constexpr int kBytes = 18, kOffset = 0;
  static constexpr bool kSigned = true, kMin = false;
  static void load(const uint8_t* p, BlockW& b) {
    // nibble -> kIq4nlValues[nibble], an in-lane byte shuffle of the table
    const __m256i table = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113));
    b.w = _mm256_shuffle_epi8(table, nibbles(p + 2));
    b.d = h2f(u16_at(p));
  }
};

// 8 int32 lanes summing to w·x - kOffset·sum(x) (see the top of the file for why the int16
// pairs of maddubs cannot saturate). For signed formats u = |w| (computed once per row).
template <class F>
inline __m256i dot(__m256i u, __m256i w, __m256i x, int32_t xsum) {
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (F::kSigned) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_sign_epi8(x, w)), ones);
  } else {
    const __m256i d = _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
    if constexpr (F::kOffset == 0) return d;
    return _mm256_add_epi32(d, _mm256_set1_epi32(-(F::kOffset / 8) * xsum));
  }
}

#include "cpu/block_kernel_helpers.inc"

// NR rows x NT tokens over a row's blocks. x: token 0's activation row; tokens x_row_bytes apart.
template <class F, int NR, int NT>
void tile(const uint8_t* x, int64_t x_row_bytes, int64_t blocks, const uint8_t* w, int64_t stride,
          float* y, int64_t ldy) {
  __m256 acc[NR][NT];
  float macc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps(), macc[r][t] = 0.f;
  for (int64_t b = 0; b < blocks; ++b) {
    BlockW wv[NR];
    __m256i u[NR];
    for (int r = 0; r < NR; ++r) {
      // the next tile's rows at this offset: keeps reads in flight (rows are a few KB)
      _mm_prefetch(reinterpret_cast<const char*>(w + (r + NR) * stride + b * F::kBytes) + 256, _MM_HINT_T0);
      F::load(w + r * stride + b * F::kBytes, wv[r]);
      if constexpr (F::kSigned) u[r] = _mm256_sign_epi8(wv[r].w, wv[r].w);
      else u[r] = wv[r].w;
    }
    for (int t = 0; t < NT; ++t) {
      const auto* a = reinterpret_cast<const ActQ8_32*>(x + t * x_row_bytes) + b;
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a->qs));
      const float dx = a->d;
      const int32_t xsum = a->sum;
      for (int r = 0; r < NR; ++r) {
        const __m256 dotf = _mm256_cvtepi32_ps(dot<F>(u[r], wv[r].w, xv, xsum));
        acc[r][t] = _mm256_fmadd_ps(dotf, _mm256_set1_ps(wv[r].d * dx), acc[r][t]);
        if constexpr (F::kMin) macc[r][t] += wv[r].m * (dx * float(xsum));
      }
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = hsum8(acc[r][t]) + macc[r][t];
}

constexpr int kPrefillRows = 2;    // 16 ymm registers: 2 x 4 accumulators + operands

// NT tokens against the rows [rb, re). Rows already in cache (an earlier token tile of this
// call read them) go kPrefillRows at a time; rows still in DRAM one at a time, the next row
// prefetched: from DRAM, several rows' streams at once read at half the bandwidth (measured 9-10
// vs 20-22 GB/s on one thread for q4_k / q6_k).
template <class F, int NT>
void token_tiles(const uint8_t* x, int64_t x_row_bytes, int64_t blocks, const uint8_t* w, int64_t stride,
                 int64_t rb, int64_t re, bool cached, float* y, int64_t ldy) {
  int64_t r = rb;
  if (cached)
    for (; r + kPrefillRows <= re; r += kPrefillRows)
      tile<F, kPrefillRows, NT>(x, x_row_bytes, blocks, w + r * stride, stride, y + r, ldy);
  for (; r < re; ++r) tile<F, 1, NT>(x, x_row_bytes, blocks, w + r * stride, stride, y + r, ldy);
}

template <class F>
void rows(const void* xp, int64_t x_row_bytes, int64_t n_tok, const void* wp, int64_t stride,
          int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* w = static_cast<const uint8_t*>(wp);
  const auto* x = static_cast<const uint8_t*>(xp);
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    int64_t t = 0;
    for (; t + 4 <= n_tok; t += 4)
      token_tiles<F, 4>(x + t * x_row_bytes, x_row_bytes, blocks, w, stride, rb, re, t > 0, y + t * ldy, ldy);
    // the last 1-3 tokens (a decode step, a short speculative pass) in one tile: each row's
    // blocks unpacked once for all of them
    const uint8_t* xt = x + t * x_row_bytes;
    switch (n_tok - t) {
      case 1: token_tiles<F, 1>(xt, x_row_bytes, blocks, w, stride, rb, re, t > 0, y + t * ldy, ldy); break;
      case 2: token_tiles<F, 2>(xt, x_row_bytes, blocks, w, stride, rb, re, t > 0, y + t * ldy, ldy); break;
      case 3: token_tiles<F, 3>(xt, x_row_bytes, blocks, w, stride, rb, re, t > 0, y + t * ldy, ldy); break;
      default: break;
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
