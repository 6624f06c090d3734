// AVX2 + FMA + F16C matmul kernels (8 floats per vector). Compiled with -mavx2 -mfma -mf16c;
// everything here has internal linkage except the kernel table (see matmul_kernels.h).
#include <immintrin.h>

#include <cstring>

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
  static __m256 load8(const T* p) { return _mm256_loadu_ps(p); }
  static float load1(const T* p) { return *p; }
};
struct BF16W {
  using T = uint16_t;
  static __m256 load8(const T* p) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float load1(const T* p) {
    uint32_t bits = uint32_t(*p) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
};
struct F16W {
  using T = uint16_t;
  static __m256 load8(const T* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static float load1(const T* p) { return _cvtsh_ss(*p); }
};

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// An NR-rows x NT-tokens register tile: y[t*ldy + r] = x_t · w_r.
template <class W, int NR, int NT>
void tile(const float* x, int64_t ldx, const typename W::T* w, int64_t in, float* y, int64_t ldy) {
  __m256 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= in; k += 8) {
    __m256 wv[NR];
    for (int r = 0; r < NR; ++r) {
      prefetch_ahead(w + (r + NR) * in + k);
      wv[r] = W::load8(w + r * in + k);
    }
    for (int t = 0; t < NT; ++t) {
      __m256 xv = _mm256_loadu_ps(x + t * ldx + k);
      for (int r = 0; r < NR; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < NR; ++r) {
    for (int t = 0; t < NT; ++t) {
      float s = hsum(acc[r][t]);
      for (int64_t kk = k; kk < in; ++kk) s += W::load1(w + r * in + kk) * x[t * ldx + kk];
      y[t * ldy + r] = s;
    }
  }
}

template <class W>
void rows_one_token(const float* x, const typename W::T* w, int64_t in, int64_t r0, int64_t r1,
                    float* y) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) tile<W, 4, 1>(x, 0, w + r * in, in, y + r, 0);
  for (; r < r1; ++r) tile<W, 1, 1>(x, 0, w + r * in, in, y + r, 0);
}

template <class W>
void rows(const float* x, int64_t n_tok, int64_t ldx, const void* wp, int64_t in, int64_t r0,
          int64_t r1, float* y, int64_t ldy) {
  const auto* w = static_cast<const typename W::T*>(wp);
  // A block of weight rows stays in cache while every token streams past it.
  constexpr int64_t kRowBlock = 16;
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    int64_t t = 0;
    for (; t + 4 <= n_tok; t += 4) {
      int64_t r = rb;
      for (; r + 2 <= re; r += 2) tile<W, 2, 4>(x + t * ldx, ldx, w + r * in, in, y + t * ldy + r, ldy);
      for (; r < re; ++r) tile<W, 1, 4>(x + t * ldx, ldx, w + r * in, in, y + t * ldy + r, ldy);
    }
    for (; t < n_tok; ++t) rows_one_token<W>(x + t * ldx, w, in, rb, re, y + t * ldy);
  }
}

// acc + 8 int32 sums of 4 adjacent products u·s (u unsigned, s signed bytes). Without VNNI:
// maddubs to int16 pairs (|u| <= 128 and |s| <= 127 cannot saturate), then madd to int32.
inline __m256i dot_u8_s8(__m256i acc, __m256i u, __m256i s) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
inline float hsum8(__m256 v) { return hsum(v); }
constexpr int kPrefillRows = 2;  // 16 ymm registers: 2x4 accumulators + operands

// ---- block-quantized weights x int8 activations ----

// q8_0: signed weights, dotted through the |w|, sign(x, w) trick.
struct Q8W {
  static constexpr int64_t kBlockBytes = 32;
  static __m256i load(const uint8_t* row, int64_t b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b * 32));
  }
  // 8 int32 lanes summing to w·x
  static __m256i dot(__m256i w, __m256i x, int32_t /*xsum*/) {
    return dot_u8_s8(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
  }
};
// q4_0: the nibbles n in [0, 15] are already unsigned: (n - 8)·x = n·x - 8·sum(x), and the
// -8·sum(x) is spread over the 8 lanes as -sum(x) each.
struct Q4W {
  static constexpr int64_t kBlockBytes = 16;
  static __m256i load(const uint8_t* row, int64_t b) {  // 32 nibbles as bytes
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + b * 16));
    const __m128i mask = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(v, mask), hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
    return _mm256_set_m128i(hi, lo);
  }
  static __m256i dot(__m256i w, __m256i x, int32_t xsum) {
    return dot_u8_s8(_mm256_set1_epi32(-xsum), w, x);
  }
};

// NR rows x NT tokens; per block one integer dot per pair, scaled and summed in f32. Scales are
// read 8 blocks at a time as vectors and each block's lane is broadcast with a permute (scalar
// f16 conversions per block cost more than the integer dot itself).
template <class W, int NR, int NT>
void qtile(const int8_t* xq, const float* xd, const int32_t* xs, int64_t blocks, const uint8_t* w,
           int64_t stride, const uint16_t* wd, float* y, int64_t ldy) {
  __m256 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  auto block = [&](int64_t b, const __m256* dw, const __m256* dx, __m256i lane) {
    __m256i wv[NR];
    __m256 sw[NR];
    for (int r = 0; r < NR; ++r) {
      prefetch_ahead(w + (r + NR) * stride + b * W::kBlockBytes);
      wv[r] = W::load(w + r * stride, b);
      sw[r] = _mm256_permutevar8x32_ps(dw[r], lane);
    }
    for (int t = 0; t < NT; ++t) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + (t * blocks + b) * 32));
      const __m256 sx = _mm256_permutevar8x32_ps(dx[t], lane);
      const int32_t xsum = xs[t * blocks + b];
      for (int r = 0; r < NR; ++r)
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(W::dot(wv[r], xv, xsum)),
                                    _mm256_mul_ps(sw[r], sx), acc[r][t]);
    }
  };
  __m256 dw[NR], dx[NT];
  int64_t b = 0;
  for (; b + 8 <= blocks; b += 8) {
    for (int r = 0; r < NR; ++r)
      dw[r] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wd + r * blocks + b)));
    for (int t = 0; t < NT; ++t) dx[t] = _mm256_loadu_ps(xd + t * blocks + b);
    for (int j = 0; j < 8; ++j) block(b + j, dw, dx, _mm256_set1_epi32(j));
  }
  for (; b < blocks; ++b) {  // the last blocks, one scale at a time (lane 0)
    for (int r = 0; r < NR; ++r) dw[r] = _mm256_set1_ps(_cvtsh_ss(wd[r * blocks + b]));
    for (int t = 0; t < NT; ++t) dx[t] = _mm256_set1_ps(xd[t * blocks + b]);
    block(b, dw, dx, _mm256_setzero_si256());
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = hsum8(acc[r][t]);
}

template <class W>
void qrows(const int8_t* xq, const float* xd, const int32_t* xs, int64_t n_tok, int64_t blocks,
           const void* wq, const uint16_t* wd, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* w = static_cast<const uint8_t*>(wq);
  const int64_t stride = blocks * W::kBlockBytes;
  constexpr int64_t kRowBlock = 16;
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    int64_t t = 0;
    for (; t + 4 <= n_tok; t += 4) {
      const int8_t* xt = xq + t * blocks * 32;
      int64_t r = rb;
      for (; r + kPrefillRows <= re; r += kPrefillRows)
        qtile<W, kPrefillRows, 4>(xt, xd + t * blocks, xs + t * blocks, blocks, w + r * stride,
                                  stride, wd + r * blocks, y + t * ldy + r, ldy);
      for (; r < re; ++r)
        qtile<W, 1, 4>(xt, xd + t * blocks, xs + t * blocks, blocks, w + r * stride, stride, wd + r * blocks,
                       y + t * ldy + r, ldy);
    }
    for (; t < n_tok; ++t) {
      const int8_t* xt = xq + t * blocks * 32;
      int64_t r = rb;
      for (; r + 4 <= re; r += 4)
        qtile<W, 4, 1>(xt, xd + t * blocks, xs + t * blocks, blocks, w + r * stride, stride, wd + r * blocks,
                       y + t * ldy + r, 0);
      for (; r < re; ++r)
        qtile<W, 1, 1>(xt, xd + t * blocks, xs + t * blocks, blocks, w + r * stride, stride, wd + r * blocks,
                       y + t * ldy + r, 0);
    }
  }
}

}  // namespace

const MatmulKernels kMatmulAvx2 = {rows<F32W>, rows<BF16W>, rows<F16W>, qrows<Q8W>, qrows<Q4W>};

}  // namespace r1lite
