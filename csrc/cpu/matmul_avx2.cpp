// AVX2 + FMA + F16C matmul kernels (8 floats per vector). Compiled with -mavx2 -mfma -mf16c;
// everything here has internal linkage except the kernel table (see matmul_kernels.h).
#include <immintrin.h>

#include <cstring>

#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

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
    for (int r = 0; r < NR; ++r) wv[r] = W::load8(w + r * in + k);
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

}  // namespace

const MatmulKernels kMatmulAvx2 = {rows<F32W>, rows<BF16W>, rows<F16W>};

}  // namespace r1lite
