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


// acc + 8 int32 sums of 4 adjacent products u·s (u unsigned, s signed bytes). Without VNNI:
// maddubs to int16 pairs (|u| <= 128 and |s| <= 127 cannot saturate), then madd to int32.
inline __m256i dot_u8_s8(__m256i acc, __m256i u, __m256i s) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
inline float hsum8(__m256 v) { return hsum(v); }
constexpr int kPrefillRows = 2;  // 16 ymm registers: 2x4 accumulators + operands

#include "cpu/quant_tiles_256.inc"

constexpr int kFloatPrefillRows = 2;

// The 256-bit tiles read the activations as quantize_activations wrote them (xa = xq).
template <class W>
const int8_t* arrange_activations(const int8_t* xq, const int32_t*, int64_t, int64_t) { return xq; }
template <class W>
int64_t arranged_token_bytes(int64_t blocks) { return blocks * 32; }

template <class W>
void prefill_qtile(const int8_t* xq, const float* xd, const int32_t* xs, const int8_t* /*xa*/,
                   int64_t blocks, const uint8_t* w, int64_t stride, const uint16_t* wd, float* y,
                   int64_t ldy) {
  qtile<W, kPrefillRows, 4>(xq, xd, xs, blocks, w, stride, wd, y, ldy);
}

// Four rows of one token, one row at a time (the stream ahead prefetched): from DRAM, four rows'
// streams at once read at half the bandwidth (q8_0, one thread: 12 -> 24 GB/s).
template <class W>
void decode_qtile(const int8_t* xq, const float* xd, const int32_t* xs, const int8_t* /*xa*/,
                  int64_t blocks, const uint8_t* w, int64_t stride, const uint16_t* wd, float* y) {
  for (int r = 0; r < 4; ++r) qtile<W, 1, 1>(xq, xd, xs, blocks, w + r * stride, stride, wd + r * blocks, y + r, 0);
}

// the last 2-3 tokens of a call in one 256-bit qtile (measured on a Zen 3, one thread, q8_0:
// 2 tokens cost 1.5 decode steps instead of 2); decode_qtile is the same qtile
template <class W>
constexpr bool kSmallBatchTiles = true;
template <class W, int NR, int NT>
void small_batch_tile(const int8_t* xq, const float* xd, const int32_t* xs, int64_t blocks, const uint8_t* w,
                      int64_t stride, const uint16_t* wd, float* y, int64_t ldy) {
  qtile<W, NR, NT>(xq, xd, xs, blocks, w, stride, wd, y, ldy);
}

#include "cpu/row_loops.inc"

// Readers of cached rows for the weighted sum: 8 values of row t from value j (j + 8 <= dim),
// or one. Float formats read as the weight loaders do; q8_0 scales the int8 quants by their
// block's scale (8 values never straddle a block: j is a multiple of 8).
template <class W>
struct FloatRows {
  static __m256 load8(const void* rows, const uint16_t*, int64_t t, int64_t j, int64_t ld) {
    return W::load8(static_cast<const typename W::T*>(rows) + t * ld + j);
  }
  static float load1(const void* rows, const uint16_t*, int64_t t, int64_t j, int64_t ld) {
    return W::load1(static_cast<const typename W::T*>(rows) + t * ld + j);
  }
};
struct Q8Rows {
  static __m256 load8(const void* rows, const uint16_t* scales, int64_t t, int64_t j, int64_t ld) {
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(rows) + t * ld + j));
    const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    return _mm256_mul_ps(v, _mm256_set1_ps(_cvtsh_ss(scales[t * (ld / 32) + j / 32])));
  }
  static float load1(const void* rows, const uint16_t* scales, int64_t t, int64_t j, int64_t ld) {
    return float(static_cast<const int8_t*>(rows)[t * ld + j]) * _cvtsh_ss(scales[t * (ld / 32) + j / 32]);
  }
};

// NH heads at once: each 8-value slice of a row is loaded once for all of them. Per head the
// sum runs over t in order, as for one head alone.
template <class R, int NH>
void weighted_sum_heads(const float* p, int64_t ldp, const void* rows, const uint16_t* scales,
                        int64_t count, int64_t dim, int64_t ld, float* out, int64_t ldo) {
  int64_t j = 0;
  for (; j + 8 <= dim; j += 8) {
    __m256 acc[NH];
    for (int h = 0; h < NH; ++h) acc[h] = _mm256_setzero_ps();
    for (int64_t t = 0; t < count; ++t) {
      const __m256 row = R::load8(rows, scales, t, j, ld);
      for (int h = 0; h < NH; ++h) acc[h] = _mm256_fmadd_ps(_mm256_set1_ps(p[h * ldp + t]), row, acc[h]);
    }
    for (int h = 0; h < NH; ++h)
      _mm256_storeu_ps(out + h * ldo + j, _mm256_add_ps(_mm256_loadu_ps(out + h * ldo + j), acc[h]));
  }
  for (; j < dim; ++j) {
    for (int h = 0; h < NH; ++h) {
      float sum = 0.f;
      for (int64_t t = 0; t < count; ++t) sum += p[h * ldp + t] * R::load1(rows, scales, t, j, ld);
      out[h * ldo + j] += sum;
    }
  }
}

#include "cpu/weighted_sum_heads.inc"

}  // namespace

const MatmulKernels kMatmulAvx2 = {rows<F32W>, rows<BF16W>, rows<F16W>, qrows<Q8W>, qrows<Q4W>,
                                   weighted_sum<FloatRows<F32W>>, weighted_sum<FloatRows<BF16W>>,
                                   weighted_sum<FloatRows<F16W>>, weighted_sum<Q8Rows>};

}  // namespace r1lite
