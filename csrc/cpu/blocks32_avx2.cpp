// Avx2 kernels of GGUF's block formats gguf_q8_0, gguf_q4_0, q4_1, q5_0, q5_1, iq4_nl (core/blocks.h), for
// cpu/matmul.cpp's dispatch (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything
// here has internal linkage except the list.
//
// A block's 32 values against a token's activation block (ActQ8_32, as quantize_act_q8_32
// wrote it), all in integers to the block's end:
//  - A weight block becomes 32 bytes in value order (byte j = value j; the nibble formats'
//    16 bytes give values 0-15 from their low nibbles, 16-31 from their high ones).
//  - maddubs multiplies unsigned by signed bytes and adds pairs into int16 with saturation, so
//    each format keeps its pair sums below 2^15 (|x| <= 127, blocks.h):
//      q4_0, q4_1 (nibbles n <= 15), q5_0, q5_1 (5-bit q <= 31) stay unsigned:
//        |pair| <= 2 * 31 * 127 = 7874;
//      q8_0 (-128..127) and iq4_nl (table values -127..113) are signed: |w| times x with w's
//        sign moved onto x (sign_epi8): |pair| <= 2 * 128 * 127 = 32512 < 32767.
//    madd with ones widens the pairs to int32; a block's dot I_b is exact.
//  - The offset formats keep their nibbles unsigned and take the offset off in the integer:
//    I_b = u·x - c·sum(x) (q4_0: c = 8, q5_0: 16; |I_b| <= 32·31·127). The min formats add
//    m·sum(x) in f32: a second term m2_b·(d_x·sum x)_b per block, m2 the min (q4_1, q5_1).
// Then in f32, for each (row, token): lane j = b mod 8 of an accumulator takes m2_b·(d_x·sum x)_b
// (min formats) and then I_b·(d_w·d_x)_b, for b = j, j + 8, ... in order, and the eight lanes are
// summed as hsum8 sums them. Two arrangements compute exactly that, so a token's result does not depend on
// its batch:
//  - small calls (decode, verification passes) read each row once: 8 blocks' int32 lanes are
//    summed into one lane per block by a hadd tree, then one conversion and one fma per 8 blocks
//    (lane_tile);
//  - prefill unpacks 8 rows at a time into interleaved quants (unpack_group: vector k holds
//    values 4k..4k+3 of each row's block, a row per 32-bit lane, as llama.cpp's repacked Q4_0
//    does, but per call in a per-thread buffer: the file's blocks stay as they are), so a token's
//    activations broadcast 4 bytes at a time meet 8 rows at once, and the float steps of 8 rows
//    are one vector (group_tile). The unsigned formats sum kPairSums maddubs results in int16
//    before one madd.
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
// kPairSums: how many maddubs results int16 holds before the madd (4-bit: 8 x 2·15·127 = 30480,
// 5-bit: 4 x 2·31·127 = 31496, both < 32767; signed: 1).
struct Q8_0F {
  static constexpr int kBytes = 34, kOffset = 0, kPairSums = 1;
  static constexpr bool kSigned = true, kMin = false;
  static __m256i quants(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2)); }
};
struct Q4_0F {
  static constexpr int kPairSums = 8;
  static constexpr int kBytes = 18, kOffset = 8;
  static constexpr bool kSigned = false, kMin = false;
  static __m256i quants(const uint8_t* p) { return nibbles(p + 2); }
};
struct Q4_1F {
  static constexpr int kPairSums = 8;
  static constexpr int kBytes = 20, kOffset = 0;
  static constexpr bool kSigned = false, kMin = true;
  static __m256i quants(const uint8_t* p) { return nibbles(p + 4); }
};
struct Q5_0F {
  static constexpr int kPairSums = 4;
  static constexpr int kBytes = 22, kOffset = 16;
  static constexpr bool kSigned = false, kMin = false;
  static __m256i quants(const uint8_t* p) { return _mm256_or_si256(nibbles(p + 6), fifth_bits(p + 2)); }
};
struct Q5_1F {
  static constexpr int kPairSums = 4;
  static constexpr int kBytes = 24, kOffset = 0;
  static constexpr bool kSigned = false, kMin = true;
  static __m256i quants(const uint8_t* p) { return _mm256_or_si256(nibbles(p + 8), fifth_bits(p + 4)); }
};
struct IQ4NLF {
  static constexpr int kBytes = 18, kOffset = 0, kPairSums = 1;
  static constexpr bool kSigned = true, kMin = false;
  static __m256i quants(const uint8_t* p) {
    // nibble -> kIq4nlValues[nibble], an in-lane byte shuffle of the table
    const __m256i table = _mm256_broadcastsi128_si256(
        _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113));
    return _mm256_shuffle_epi8(table, nibbles(p + 2));
  }
};

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
// For signed formats u = |w|.
template <class F>
inline __m256i dot(__m256i u, __m256i w, __m256i x) {
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (F::kSigned) return _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_sign_epi8(x, w)), ones);
  else return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
}

#include "cpu/block_kernel_helpers.inc"

// Per token, its blocks' d_x and d_x·sum(x) as float arrays (fx[t][0][b], fx[t][1][b]), and
// the offset formats' c·sum(x) (*offsets: [t][b]), once per call.
template <class F>
inline const float* act_factors(const uint8_t* x, int64_t x_row_bytes, int64_t n_tok, int64_t blocks,
                                const int32_t** offsets) {
  thread_local KernelScratch factors, sums;
  auto* f = reinterpret_cast<float*>(factors.reserve(size_t(n_tok * 2 * blocks) * sizeof(float)));
  auto* c = reinterpret_cast<int32_t*>(sums.reserve(size_t(n_tok * blocks) * sizeof(int32_t)));
  for (int64_t t = 0; t < n_tok; ++t) {
    const auto* a = reinterpret_cast<const ActQ8_32*>(x + t * x_row_bytes);
    for (int64_t b = 0; b < blocks; ++b) {
      f[(2 * t) * blocks + b] = a[b].d;
      f[(2 * t + 1) * blocks + b] = a[b].d * float(a[b].sum);
      c[t * blocks + b] = F::kOffset * a[b].sum;
    }
  }
  *offsets = c;
  return f;
}

// Block b's integer dots of 1 row x NT tokens for blocks b..b+7 (n of them; the others 0), one
// int32 lane per block.
template <class F, int NT, int kN>
inline void block_lanes(const uint8_t* x, int64_t x_row_bytes, const uint8_t* p, int64_t b, int n,
                        __m256i (&lanes)[NT]) {
  __m256i half[NT];  // blocks 0-3 as hadd(hadd(d0, d1), hadd(d2, d3)): [B0..B3 lo | B0..B3 hi]
  for (int q = 0; q < 2; ++q) {
    __m256i pair[2][NT];
    for (int h = 0; h < 2; ++h) {
      __m256i d[2][NT];
      for (int e = 0; e < 2; ++e) {
        const int j = 4 * q + 2 * h + e;
        if (j >= kN || (kN < 8 && j >= n)) {
          for (int t = 0; t < NT; ++t) d[e][t] = _mm256_setzero_si256();
          continue;
        }
        const uint8_t* pj = p + j * F::kBytes;
        _mm_prefetch(reinterpret_cast<const char*>(pj + kStreamAhead), _MM_HINT_T0);
        const __m256i wv = F::quants(pj);
        const __m256i u = F::kSigned ? _mm256_sign_epi8(wv, wv) : wv;
        for (int t = 0; t < NT; ++t) {
          const auto* a = reinterpret_cast<const ActQ8_32*>(x + t * x_row_bytes) + b + j;
          d[e][t] = dot<F>(u, wv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a->qs)));
        }
      }
      for (int t = 0; t < NT; ++t) pair[h][t] = _mm256_hadd_epi32(d[0][t], d[1][t]);
    }
    for (int t = 0; t < NT; ++t) {
      const __m256i quad = _mm256_hadd_epi32(pair[0][t], pair[1][t]);
      if (q == 0) {
        half[t] = quad;
      } else {  // [B0..B3 lo | B4..B7 lo] + [B0..B3 hi | B4..B7 hi]
        lanes[t] = _mm256_add_epi32(_mm256_permute2x128_si256(half[t], quad, 0x20),
                                    _mm256_permute2x128_si256(half[t], quad, 0x31));
      }
    }
  }
}

// The f32 steps of 8 blocks' lanes: lane j += m2·(d_x·sum x) (min formats), then += I·(d_w·d_x).
template <class F, int kN>
inline __m256 lane_fma(__m256 acc, __m256i lanes, __m256 dw, __m256 m2, const float* f, int64_t blocks, int n) {
  if constexpr (F::kMin) {
    const __m256 dxs = kN == 8 ? _mm256_loadu_ps(f + blocks) : _mm256_maskload_ps(f + blocks, lanes_below(n));
    acc = _mm256_fmadd_ps(m2, dxs, acc);
  }
  const __m256 dx = kN == 8 ? _mm256_loadu_ps(f) : _mm256_maskload_ps(f, lanes_below(n));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_mul_ps(dw, dx), acc);
}

// One row x NT tokens over the row's blocks; fx, cs: token 0's act_factors and offsets.
template <class F, int NT>
void lane_tile(const uint8_t* x, int64_t x_row_bytes, const float* fx, const int32_t* cs, int64_t blocks,
               const uint8_t* w, float* y, int64_t ldy) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  const auto step = [&](auto kn, int64_t b, int n) {
    constexpr int kN = decltype(kn)::value;
    const uint8_t* p = w + b * F::kBytes;
    __m256i lanes[NT];
    block_lanes<F, NT, kN>(x, x_row_bytes, p, b, n, lanes);
    if constexpr (F::kOffset != 0)
      for (int t = 0; t < NT; ++t) {
        const int32_t* c = cs + t * blocks + b;
        lanes[t] = _mm256_sub_epi32(lanes[t], kN == 8 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c))
                                                      : _mm256_maskload_epi32(c, lanes_below(n)));
      }
    const __m256 dw = f16_words<F::kBytes, kN>(p, 0, n);
    __m256 m2 = _mm256_setzero_ps();
    if constexpr (F::kMin) m2 = f16_words<F::kBytes, kN>(p, 2, n);
    for (int t = 0; t < NT; ++t) acc[t] = lane_fma<F, kN>(acc[t], lanes[t], dw, m2, fx + 2 * t * blocks + b, blocks, n);
  };
  int64_t b = 0;
  for (; b + 8 <= blocks; b += 8) step(TokenCount<8>{}, b, 8);
  // the row's last blocks (kN: at most that many; a short tail skips the empty half's work)
  if (blocks - b > 4) step(TokenCount<7>{}, b, int(blocks - b));
  else if (b < blocks) step(TokenCount<4>{}, b, int(blocks - b));
  for (int t = 0; t < NT; ++t) y[t * ldy] = hsum8(acc[t]);
}

// An unpacked group of 8 rows, per block: 8 vectors of interleaved quants (signed formats: then
// 8 of their magnitudes), then d_w and m2 (min formats) of the 8 rows as floats.
constexpr int kGroupRows = 8;
template <class F>
constexpr int64_t kQuantBytes = F::kSigned ? 512 : 256;
template <class F>
constexpr int64_t kGroupBlockBytes = kQuantBytes<F> + 2 * 32;

// Rows [0, nrows) at w (rows stride bytes apart; rows past nrows: zeros) into u.
template <class F>
void unpack_group(const uint8_t* w, int64_t stride, int64_t blocks, int nrows, uint8_t* u) {
  for (int64_t b = 0; b < blocks; ++b) {
    __m256i q[8];
    alignas(32) float dw[8], m2[8];
    for (int r = 0; r < 8; ++r) {
      if (r >= nrows) {
        q[r] = _mm256_setzero_si256();
        dw[r] = m2[r] = 0.0f;
        continue;
      }
      const uint8_t* p = w + r * stride + b * F::kBytes;
      q[r] = F::quants(p);
      dw[r] = f16(u16_at(p));
      m2[r] = F::kMin ? f16(u16_at(p + 2)) : 0.0f;
    }
    __m256i out[8];
    transpose_words8(q, out);
    uint8_t* g = u + b * kGroupBlockBytes<F>;
    for (int k = 0; k < 8; ++k) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(g + 32 * k), out[k]);
      if constexpr (F::kSigned) _mm256_store_si256(reinterpret_cast<__m256i*>(g + 256 + 32 * k), _mm256_sign_epi8(out[k], out[k]));
    }
    _mm256_store_ps(reinterpret_cast<float*>(g + kQuantBytes<F>), _mm256_load_ps(dw));
    _mm256_store_ps(reinterpret_cast<float*>(g + kQuantBytes<F> + 32), _mm256_load_ps(m2));
  }
}

// The int32 dots of 8 unpacked rows (g) with NT tokens' block b, a row per lane, maddubs sums
// kept in int16 over kPairSums vectors before a madd. The 4-bit formats hold all 8 vectors of the
// block in registers while every token passes (one madd each); the 5-bit ones half a block at a
// time (two madds each; measured 0.87-0.91x the time of holding all 8 at 64 and 512 tokens, where
// the 4-bit ones measured 1.14-1.18x).
template <class F, int NT>
inline void group_dots_unsigned(const uint8_t* g, const uint8_t* x, int64_t x_row_bytes, int64_t b, __m256i (&dots)[NT]) {
  const __m256i ones = _mm256_set1_epi16(1);
  constexpr int kHeld = F::kPairSums;  // vectors in registers at a time
  __m256i w[kHeld];
  for (int h = 0; h < 8 / kHeld; ++h) {
    for (int i = 0; i < kHeld; ++i) w[i] = _mm256_load_si256(reinterpret_cast<const __m256i*>(g + 32 * (kHeld * h + i)));
    for (int t = 0; t < NT; ++t) {
      const int8_t* xq = (reinterpret_cast<const ActQ8_32*>(x + t * x_row_bytes) + b)->qs + 4 * kHeld * h;
      const auto part = [&](int i) {
        return _mm256_maddubs_epi16(w[i], _mm256_castps_si256(_mm256_broadcast_ss(reinterpret_cast<const float*>(xq + 4 * i))));
      };
      __m256i p = _mm256_add_epi16(_mm256_add_epi16(part(0), part(1)), _mm256_add_epi16(part(2), part(3)));
      if constexpr (kHeld == 8)
        p = _mm256_add_epi16(p, _mm256_add_epi16(_mm256_add_epi16(part(4), part(5)), _mm256_add_epi16(part(6), part(7))));
      const __m256i d = _mm256_madd_epi16(p, ones);
      dots[t] = h ? _mm256_add_epi32(dots[t], d) : d;
    }
  }
}

// The signed formats, NT tokens at once: the magnitudes (g + 256) times the activations given the
// weights' signs (g), each maddubs widened at once (its pairs reach 32512). Half a block's vectors
// (4 signs, 4 magnitudes) stay in registers while every token passes.
template <class F, int NT>
inline void group_dots_signed(const uint8_t* g, const uint8_t* x, int64_t x_row_bytes, int64_t b, __m256i (&dots)[NT]) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (int t = 0; t < NT; ++t) dots[t] = _mm256_setzero_si256();
  for (int h = 0; h < 2; ++h) {
    __m256i w[4], m[4];
    for (int i = 0; i < 4; ++i) {
      w[i] = _mm256_load_si256(reinterpret_cast<const __m256i*>(g + 32 * (4 * h + i)));
      m[i] = _mm256_load_si256(reinterpret_cast<const __m256i*>(g + 256 + 32 * (4 * h + i)));
    }
    for (int t = 0; t < NT; ++t) {
      const int8_t* xq = (reinterpret_cast<const ActQ8_32*>(x + t * x_row_bytes) + b)->qs + 16 * h;
      const auto part = [&](int i) {
        const __m256i x4 = _mm256_castps_si256(_mm256_broadcast_ss(reinterpret_cast<const float*>(xq + 4 * i)));
        return _mm256_madd_epi16(_mm256_maddubs_epi16(m[i], _mm256_sign_epi8(x4, w[i])), ones);
      };
      dots[t] = _mm256_add_epi32(dots[t], _mm256_add_epi32(_mm256_add_epi32(part(0), part(1)), _mm256_add_epi32(part(2), part(3))));
    }
  }
}

// 8 unpacked rows (u) x NT tokens: lane j = b mod 8 of lane_tile's accumulator is here a vector
// over the rows, one per j, summed at the end in hsum8's order. nrows of the 8 are stored.
template <class F, int NT>
void group_tile(const uint8_t* x, int64_t x_row_bytes, const float* fx, const int32_t* cs, int64_t blocks,
                const uint8_t* u, int nrows, float* y, int64_t ldy) {
  __m256 part[NT][8];
  for (int j = 0; j < 8; ++j) {
    __m256 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t b = j; b < blocks; b += 8) {
      const uint8_t* g = u + b * kGroupBlockBytes<F>;
      const float* dw = reinterpret_cast<const float*>(g + kQuantBytes<F>);
      __m256i dots[NT];
      if constexpr (F::kSigned) group_dots_signed<F, NT>(g, x, x_row_bytes, b, dots);
      else group_dots_unsigned<F, NT>(g, x, x_row_bytes, b, dots);
      for (int t = 0; t < NT; ++t) {
        if constexpr (F::kOffset != 0) dots[t] = _mm256_sub_epi32(dots[t], _mm256_set1_epi32(cs[t * blocks + b]));
        const float* f = fx + 2 * t * blocks + b;
        if constexpr (F::kMin)
          acc[t] = _mm256_fmadd_ps(_mm256_load_ps(dw + 8), _mm256_set1_ps(f[blocks]), acc[t]);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots[t]), _mm256_mul_ps(_mm256_load_ps(dw), _mm256_set1_ps(f[0])), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) part[t][j] = acc[t];
  }
  for (int t = 0; t < NT; ++t) store_group_sums(part[t], nrows, y + t * ldy);
}

template <class F>
void lane_rows(const void* xp, int64_t x_row_bytes, int64_t n_tok, const void* wp, int64_t stride, int64_t blocks,
               int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* w = static_cast<const uint8_t*>(wp);
  const auto* x = static_cast<const uint8_t*>(xp);
  const int32_t* cs;
  const float* fx = act_factors<F>(x, x_row_bytes, n_tok, blocks, &cs);
  if (n_tok < kSmallBatch) {  // each row once, its tokens 4 at a time (5 as 3 + 2)
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t t = 0; t < n_tok;) {
        const int64_t left = n_tok - t;
        const int nt = left > 5 ? 4 : left == 5 ? 3 : int(left);
        with_token_count<4>(nt, [&](auto c) {
          lane_tile<F, decltype(c)::value>(x + t * x_row_bytes, x_row_bytes, fx + 2 * t * blocks, cs + t * blocks, blocks, w + r * stride,
                                           y + t * ldy + r, ldy);
        });
        t += nt;
      }
    return;
  }
  constexpr int kTokens = 4;
  constexpr int kGroups = 2;  // 16 rows unpacked, then every token past them
  thread_local KernelScratch unpacked;
  uint8_t* u = unpacked.reserve(size_t(kGroups * blocks * kGroupBlockBytes<F>));
  for (int64_t rb = r0; rb < r1; rb += kGroups * kGroupRows) {
    int nrows[kGroups];
    for (int g = 0; g < kGroups; ++g) {
      const int64_t left = r1 - (rb + g * kGroupRows);
      nrows[g] = left <= 0 ? 0 : left < kGroupRows ? int(left) : kGroupRows;
      if (nrows[g] > 0) unpack_group<F>(w + (rb + g * kGroupRows) * stride, stride, blocks, nrows[g], u + g * blocks * kGroupBlockBytes<F>);
    }
    for (int64_t t = 0; t < n_tok; t += kTokens) {
      const int nt = n_tok - t < kTokens ? int(n_tok - t) : kTokens;
      for (int g = 0; g < kGroups && nrows[g] > 0; ++g)
        with_token_count<kTokens>(nt, [&](auto c) {
          group_tile<F, decltype(c)::value>(x + t * x_row_bytes, x_row_bytes, fx + 2 * t * blocks, cs + t * blocks, blocks,
                                            u + g * blocks * kGroupBlockBytes<F>, nrows[g],
                                            y + t * ldy + rb + g * kGroupRows, ldy);
        });
    }
  }
}

}  // namespace

const BlockKernel kBlocks32Avx2[] = {
    {DType::GGUF_Q8_0, lane_rows<Q8_0F>},
    {DType::GGUF_Q4_0, lane_rows<Q4_0F>},
    {DType::Q4_1, lane_rows<Q4_1F>},
    {DType::Q5_0, lane_rows<Q5_0F>},
    {DType::Q5_1, lane_rows<Q5_1F>},
    {DType::IQ4_NL, lane_rows<IQ4NLF>},
    {DType::F32, nullptr},
};

}  // namespace r1lite
