// AVX-512 (F/BW/VL/DQ) matmul kernels (16 floats per vector; masked loads handle the tail).
// Compiled with AVX-512 flags; everything here has internal linkage except the kernel table.
#include <immintrin.h>

#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

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
    for (int r = 0; r < NR; ++r) wv[r] = W::load16(w + r * in + k, m);
    for (int t = 0; t < NT; ++t) {
      __m512 xv = _mm512_maskz_loadu_ps(m, x + t * ldx + k);
      for (int r = 0; r < NR; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
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
      for (; r + 4 <= re; r += 4) tile<W, 4, 4>(x + t * ldx, ldx, w + r * in, in, y + t * ldy + r, ldy);
      for (; r < re; ++r) tile<W, 1, 4>(x + t * ldx, ldx, w + r * in, in, y + t * ldy + r, ldy);
    }
    for (; t < n_tok; ++t) rows_one_token<W>(x + t * ldx, w, in, rb, re, y + t * ldy);
  }
}

}  // namespace

const MatmulKernels kMatmulAvx512 = {rows<F32W>, rows<BF16W>, rows<F16W>};

}  // namespace r1lite
