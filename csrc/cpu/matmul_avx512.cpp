// AVX-512 (F/BW/VL/DQ/VNNI) matmul kernels: float weights 16 per vector with masked tails;
// quantized weights through VNNI's vpdpbusd, one block per 256-bit or two per 512-bit vector.
// Compiled with AVX-512 flags; everything here has internal linkage except the kernel table.
#include <immintrin.h>

#include <type_traits>

#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

// Weight rows are short streams (a few KB): asking for the same offset of the rows of the next
// tile, a little ahead, keeps enough reads in flight to reach the memory bandwidth (measured:
// q8_0 decode on one thread goes from 7.5 to 23 GB/s).
template <class T>
inline void prefetch_ahead(const T* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p) + 512, _MM_HINT_T0);
}

struct F32W {
  using T = float;
  static __m512 load16(const T* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};
struct BF16W {
  using T = uint16_t;
  static __m512 load16(const T* p, __mmask16 m) {
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
};
struct F16W {
  using T = uint16_t;
  static __m512 load16(const T* p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
};

// An NR-rows x NT-tokens register tile: y[t*ldy + r] = x_t · w_r.
template <class W, int NR, int NT>
void tile(const float* x, int64_t ldx, const typename W::T* w, int64_t in, float* y, int64_t ldy) {
  __m512 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < in; k += 16) {
    const __mmask16 m = in - k >= 16 ? __mmask16(0xffff) : __mmask16((1u << (in - k)) - 1);
    __m512 wv[NR];
    for (int r = 0; r < NR; ++r) {
      prefetch_ahead(w + (r + NR) * in + k);
      wv[r] = W::load16(w + r * in + k, m);
    }
    for (int t = 0; t < NT; ++t) {
      __m512 xv = _mm512_maskz_loadu_ps(m, x + t * ldx + k);
      for (int r = 0; r < NR; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
}

// acc + 8 int32 sums of 4 adjacent products u·s (u unsigned, s signed bytes): VNNI vpdpbusd.
inline __m256i dot_u8_s8(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
constexpr int kPrefillRows = 4;  // 32 registers: 4x4 accumulators + operands

#include "cpu/quant_tiles_256.inc"

// ---- 512-bit tiles ----
// AVX-512 has no 512-bit byte sign instruction, so the |w|, sign(x, w) trick of the 256-bit tiles
// does not widen. Instead one operand is made unsigned and the offset corrected:
//   q8_0 (two blocks per vector, q8tile_zmm below):
//     (x + 128)·w = x·w + 128·sum(w)  ->  start each lane at -128·(its 4 weights' sum), per row
//   q4_0 (four blocks per vector, q4tile_zmm below): nibbles n are unsigned already;
//     (n - 8)·x = n·x - 8·sum(x)  ->  start at a share of -8·sum(x), per token

// q8_0, two blocks per vector (lanes 0-7 block b, 8-15 block b+1). The activations are made
// unsigned (x + 128) and each lane starts at -128·(the sum of its 4 weights).
template <int NR, int NT>
void q8tile_zmm(const int8_t* xq, const float* xd, const int32_t* xs, int64_t blocks,
                const uint8_t* w, int64_t stride, const uint16_t* wd, float* y, int64_t ldy) {
  __m512 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  const __m512i ones = _mm512_set1_epi8(1), bias = _mm512_set1_epi8(char(0x80));
  const int64_t main_blocks = blocks / 8 * 8;
  for (int64_t g = 0; g < main_blocks; g += 8) {
    __m512 dw[NR], dx[NT];
    for (int r = 0; r < NR; ++r)
      dw[r] = _mm512_castps256_ps512(
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wd + r * blocks + g))));
    for (int t = 0; t < NT; ++t) dx[t] = _mm512_castps256_ps512(_mm256_loadu_ps(xd + t * blocks + g));
    for (int p = 0; p < 4; ++p) {
      const int64_t b = g + 2 * p;
      const __m512i idx = _mm512_set_epi32(2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1,
                                           2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p, 2 * p, 2 * p,
                                           2 * p, 2 * p, 2 * p, 2 * p, 2 * p);
      __m512i wv[NR], start[NR];
      __m512 sw[NR];
      for (int r = 0; r < NR; ++r) {
        prefetch_ahead(w + (r + NR) * stride + b * Q8W::kBlockBytes);
        wv[r] = _mm512_loadu_si512(w + r * stride + b * Q8W::kBlockBytes);
        const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, wv[r]);
        start[r] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sums, 7));
        sw[r] = _mm512_permutexvar_ps(idx, dw[r]);
      }
      for (int t = 0; t < NT; ++t) {
        const __m512i xv = _mm512_xor_si512(_mm512_loadu_si512(xq + (t * blocks + b) * 32), bias);
        const __m512 sx = _mm512_permutexvar_ps(idx, dx[t]);
        for (int r = 0; r < NR; ++r)
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(start[r], xv, wv[r])),
                                      _mm512_mul_ps(sw[r], sx), acc[r][t]);
      }
    }
  }
  float tail[NT][NR] = {};
  if (main_blocks < blocks)
    qtile<Q8W, NR, NT>(xq, xd, xs, blocks, w, stride, wd, &tail[0][0], NR, main_blocks);
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]) + tail[t][r];
}

// q4_0, four blocks per 512-bit vector. The 64 quant bytes of blocks b..b+3 split into low
// nibbles [b 0-15 | b+1 0-15 | b+2 0-15 | b+3 0-15] and high nibbles (elements 16-31 in the same
// arrangement) with one and / shift each; the activations of the four blocks are permuted to the
// same arrangement once per token, so lane L of both products belongs to block L/4 and no weight
// shuffle is needed (the 2-block tile spends a permute per row and block pair instead).
// (n - 8)·x = n·x - 8·sum(x): each of a block's 4 lanes starts at -2·sum(x).
template <int NR, int NT>
void q4tile_zmm(const int8_t* xq, const float* xd, const int32_t* xs, int64_t blocks,
                const uint8_t* w, int64_t stride, const uint16_t* wd, float* y, int64_t ldy) {
  __m512 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  const __m512i nibble = _mm512_set1_epi8(0x0f);
  const __m512i x_lo_idx = _mm512_set_epi64(13, 12, 9, 8, 5, 4, 1, 0);   // elements 0-15 of each block
  const __m512i x_hi_idx = _mm512_set_epi64(15, 14, 11, 10, 7, 6, 3, 2);  // elements 16-31
  const int64_t main_blocks = blocks / 8 * 8;
  for (int64_t g = 0; g < main_blocks; g += 8) {
    __m512 dw[NR], dx[NT];
    __m512i neg_xsum2[NT];
    for (int r = 0; r < NR; ++r)
      dw[r] = _mm512_castps256_ps512(
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wd + r * blocks + g))));
    for (int t = 0; t < NT; ++t) {
      dx[t] = _mm512_castps256_ps512(_mm256_loadu_ps(xd + t * blocks + g));
      neg_xsum2[t] = _mm512_castsi256_si512(_mm256_sub_epi32(
          _mm256_setzero_si256(),
          _mm256_slli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xs + t * blocks + g)), 1)));
    }
    for (int p = 0; p < 2; ++p) {
      const int64_t b = g + 4 * p;
      const int q = 4 * p;  // lanes 0-3: block b, 4-7: b+1, 8-11: b+2, 12-15: b+3
      const __m512i idx = _mm512_set_epi32(q + 3, q + 3, q + 3, q + 3, q + 2, q + 2, q + 2, q + 2,
                                           q + 1, q + 1, q + 1, q + 1, q, q, q, q);
      __m512i w_lo[NR], w_hi[NR];
      __m512 sw[NR];
      for (int r = 0; r < NR; ++r) {
        // the next tile's rows at the same offset: q4_0 rows are short (768 bytes for 1536
        // columns), so prefetch_ahead's 512 would leave most of them to the hardware
        // (interleaved A/B on the 1.5B shape: 26.5 -> 28.0 tok/s; q8_0 keeps prefetch_ahead)
        _mm_prefetch(reinterpret_cast<const char*>(w + (r + NR) * stride + b * 16), _MM_HINT_T0);
        const __m512i v = _mm512_loadu_si512(w + r * stride + b * 16);
        w_lo[r] = _mm512_and_si512(v, nibble);
        w_hi[r] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
        sw[r] = _mm512_permutexvar_ps(idx, dw[r]);
      }
      for (int t = 0; t < NT; ++t) {
        const int8_t* xb = xq + (t * blocks + b) * 32;
        const __m512i x01 = _mm512_loadu_si512(xb), x23 = _mm512_loadu_si512(xb + 64);
        const __m512i x_lo = _mm512_permutex2var_epi64(x01, x_lo_idx, x23);
        const __m512i x_hi = _mm512_permutex2var_epi64(x01, x_hi_idx, x23);
        const __m512 sx = _mm512_permutexvar_ps(idx, dx[t]);
        const __m512i start = _mm512_permutexvar_epi32(idx, neg_xsum2[t]);
        for (int r = 0; r < NR; ++r) {
          const __m512i dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, w_lo[r], x_lo), w_hi[r], x_hi);
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(sw[r], sx), acc[r][t]);
        }
      }
    }
  }
  float tail[NT][NR] = {};
  if (main_blocks < blocks)
    qtile<Q4W, NR, NT>(xq, xd, xs, blocks, w, stride, wd, &tail[0][0], NR, main_blocks);
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]) + tail[t][r];
}


constexpr int kFloatPrefillRows = 4;

template <class W>
void prefill_qtile(const int8_t* xq, const float* xd, const int32_t* xs, int64_t blocks,
                   const uint8_t* w, int64_t stride, const uint16_t* wd, float* y, int64_t ldy) {
  if constexpr (std::is_same_v<W, Q4W>)
    q4tile_zmm<kPrefillRows, 4>(xq, xd, xs, blocks, w, stride, wd, y, ldy);
  else
    q8tile_zmm<kPrefillRows, 4>(xq, xd, xs, blocks, w, stride, wd, y, ldy);
}

// One token, four rows: the same 512-bit tile as prefill, so that a token's result does not
// depend on how many other tokens share its batch (the server's batches must give each request
// what it gets alone).
template <class W>
void decode_qtile(const int8_t* xq, const float* xd, const int32_t* xs, int64_t blocks,
                  const uint8_t* w, int64_t stride, const uint16_t* wd, float* y) {
  if constexpr (std::is_same_v<W, Q4W>)
    q4tile_zmm<4, 1>(xq, xd, xs, blocks, w, stride, wd, y, 0);
  else
    q8tile_zmm<4, 1>(xq, xd, xs, blocks, w, stride, wd, y, 0);
}

#include "cpu/row_loops.inc"

void weighted_sum(const float* p, const float* rows, int64_t count, int64_t dim, int64_t ld,
                  float* out) {
  for (int64_t j = 0; j < dim; j += 16) {
    const __mmask16 m = dim - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (dim - j)) - 1);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t t = 0; t < count; ++t)
      acc = _mm512_fmadd_ps(_mm512_set1_ps(p[t]), _mm512_maskz_loadu_ps(m, rows + t * ld + j), acc);
    _mm512_mask_storeu_ps(out + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, out + j), acc));
  }
}

}  // namespace

const MatmulKernels kMatmulAvx512 = {rows<F32W>, rows<BF16W>, rows<F16W>, qrows<Q8W>, qrows<Q4W>,
                                     weighted_sum};

}  // namespace r1lite
