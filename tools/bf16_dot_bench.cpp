// Is AVX-512 BF16 (vdpbf16ps) worth using for bf16 weights on this CPU? A 4-row x 4-token tile
// of a 64 x 1536 bf16 matrix, three ways (BENCHMARKS.md "bf16 weights"):
//   f32 fma:         widen the weights to f32 (shift), multiply f32 activations (r1lite's path)
//   dpbf16 (bf16 x): activations rounded to bf16, one vdpbf16ps per 32 products (llama.cpp's)
//   dpbf16 hi+lo:    activations split into bf16 hi + lo parts, two vdpbf16ps (f32-like accuracy)
//
//   g++ -O3 -mavx512f -mavx512bw -mavx512vl -mavx512bf16 tools/bf16_dot_bench.cpp -o /tmp/bf16_dot_bench && /tmp/bf16_dot_bench
#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

static float sink;

__attribute__((noinline)) void f32_tile(const uint16_t* w, const float* x, int64_t k_len, float* y) {
  __m512 acc[4][4];
  for (auto& row : acc) for (auto& a : row) a = _mm512_setzero_ps();
  for (int64_t k = 0; k < k_len; k += 16) {
    __m512 wv[4];
    for (int r = 0; r < 4; ++r)
      wv[r] = _mm512_castsi512_ps(_mm512_slli_epi32(
          _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(w + r * k_len + k))), 16));
    for (int t = 0; t < 4; ++t) {
      const __m512 xv = _mm512_loadu_ps(x + t * k_len + k);
      for (int r = 0; r < 4; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int t = 0; t < 4; ++t) y[t * 4 + r] = _mm512_reduce_add_ps(acc[r][t]);
}

__attribute__((noinline)) void bf16_tile(const uint16_t* w, const uint16_t* x_hi, const uint16_t* x_lo,
                                         int64_t k_len, float* y, bool with_lo) {
  __m512 acc[4][4];
  for (auto& row : acc) for (auto& a : row) a = _mm512_setzero_ps();
  for (int64_t k = 0; k < k_len; k += 32) {
    __m512bh wv[4];
    for (int r = 0; r < 4; ++r) wv[r] = (__m512bh)_mm512_loadu_si512(w + r * k_len + k);
    for (int t = 0; t < 4; ++t) {
      const __m512bh hi = (__m512bh)_mm512_loadu_si512(x_hi + t * k_len + k);
      for (int r = 0; r < 4; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], hi);
      if (with_lo) {
        const __m512bh lo = (__m512bh)_mm512_loadu_si512(x_lo + t * k_len + k);
        for (int r = 0; r < 4; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], lo);
      }
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int t = 0; t < 4; ++t) y[t * 4 + r] = _mm512_reduce_add_ps(acc[r][t]);
}

int main() {
  const int64_t k_len = 1536, rows = 64, iters = 20000;
  std::vector<uint16_t> w(rows * k_len, 0x3c00), x_hi(4 * k_len, 0x3c00), x_lo(4 * k_len, 0x3000);
  std::vector<float> x(4 * k_len, 1.f), y(16);
  const char* names[] = {"f32 fma", "dpbf16 (bf16 x)", "dpbf16 hi+lo"};
  for (int v = 0; v < 3; ++v) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iters; ++i)
      for (int64_t r = 0; r < rows; r += 4) {
        if (v == 0) f32_tile(&w[r * k_len], x.data(), k_len, y.data());
        else bf16_tile(&w[r * k_len], x_hi.data(), x_lo.data(), k_len, y.data(), v == 2);
        sink += y[0];
      }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-16s %.1f GFLOP/s\n", names[v], 2.0 * k_len * rows * 4 * iters / s / 1e9);
  }
}
