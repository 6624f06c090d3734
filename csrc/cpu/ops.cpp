#include "cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace r1lite {

void rmsnorm(const float* x, const float* w, int64_t d, float eps, float* out) {
  float ss = 0.f;
  for (int64_t i = 0; i < d; ++i) ss += x[i] * x[i];
  const float inv = 1.f / std::sqrt(ss / float(d) + eps);
  for (int64_t i = 0; i < d; ++i) out[i] = w[i] * (x[i] * inv);
}

void rope_angles(int64_t pos, const float* inv_freq, int64_t half, float attn_factor, float* cos,
                 float* sin) {
  for (int64_t i = 0; i < half; ++i) {
    const float angle = float(pos) * inv_freq[i];  // f32 product, as transformers computes it
    cos[i] = std::cos(angle) * attn_factor;
    sin[i] = std::sin(angle) * attn_factor;
  }
}

void rope_rotate_half(float* v, int64_t n_heads, int64_t head_dim, int64_t half, const float* cos,
                      const float* sin) {
  for (int64_t h = 0; h < n_heads; ++h) {
    float* x = v + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float a = x[i], b = x[i + half];
      x[i] = a * cos[i] - b * sin[i];
      x[i + half] = b * cos[i] + a * sin[i];
    }
  }
}

// e^x within 2 ulp of the correctly rounded value, four at a time in GCC/Clang vector types
// (std::exp is a library call per value: softmax and SwiGLU were ~2% of a decode step), which
// compile to SSE2 at the baseline instruction set and to NEON elsewhere. Cephes' expf:
// x = n·ln2 + r with |r| <= ln2/2, e^r by a polynomial, 2^n built in the exponent bits. From about
// -87.5 down (e^x under the smallest normal float) it returns 0, from 88.3 up e^88.3 (saturated
// and finite: no caller here needs more).
typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x4 __attribute__((vector_size(16)));

static inline f32x4 exp4(f32x4 x) {
  const f32x4 hi = f32x4{} + 88.3f, lo = f32x4{} - 88.f;  // -88 rounds to n = -127: scale 0 below
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;
  const float magic = 12582912.f;  // 1.5·2^23: adding it rounds to an integer in the low bits
  const f32x4 shifted = x * 1.44269504088896341f + magic;
  const f32x4 n = shifted - magic;
  const f32x4 r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  f32x4 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  i32x4 bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  bits = ((bits - 0x4B400000) + 127) << 23;  // 2^n: n + 127 in the exponent field
  f32x4 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// y[i] = f(x[i]) for a vector function f, four values at a time (the last few padded).
template <class F>
static inline void map4(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    f32x4 v;
    std::memcpy(&v, x + i, sizeof v);
    v = f(v, i);
    std::memcpy(y + i, &v, sizeof v);
  }
  if (i < n) {
    f32x4 v = {};
    std::memcpy(&v, x + i, size_t(n - i) * 4);
    v = f(v, i);
    std::memcpy(y + i, &v, size_t(n - i) * 4);
  }
}

void exp_inplace(float* x, int64_t n) {
  map4(x, x, n, [](f32x4 v, int64_t) { return exp4(v); });
}

// Attention's scores: the max and the sum in 16 lanes (4 vectors) rather than one scalar chain
// each (a dependent maxss / addss per score was most of this function's time at long contexts);
// the lanes' sums are added in a fixed order, then the last n % 16 scores one by one.
void exp_scaled_shifted(float* x, int64_t n, float scale, float* max_out, float* sum_out) {
  const int64_t n16 = n / 16 * 16;
  f32x4 m[4];
  for (auto& v : m) v = f32x4{} - std::numeric_limits<float>::infinity();
  for (int64_t t = 0; t < n16; t += 16)
    for (int k = 0; k < 4; ++k) {
      f32x4 v;
      std::memcpy(&v, x + t + 4 * k, sizeof v);
      v *= scale;
      m[k] = v > m[k] ? v : m[k];
    }
  float max_score = -std::numeric_limits<float>::infinity();
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 4; ++i) max_score = std::max(max_score, m[k][i]);
  for (int64_t t = n16; t < n; ++t) max_score = std::max(max_score, x[t] * scale);
  f32x4 acc[4] = {};
  for (int64_t t = 0; t < n16; t += 16)
    for (int k = 0; k < 4; ++k) {
      f32x4 v;
      std::memcpy(&v, x + t + 4 * k, sizeof v);
      v = exp4(v * scale - max_score);
      std::memcpy(x + t + 4 * k, &v, sizeof v);
      acc[k] += v;
    }
  const f32x4 a = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  float sum = (a[0] + a[1]) + (a[2] + a[3]);
  if (n16 < n) {
    map4(x + n16, x + n16, n - n16, [&](f32x4 v, int64_t) { return exp4(v * scale - max_score); });
    for (int64_t t = n16; t < n; ++t) sum += x[t];
  }
  *max_out = max_score;
  *sum_out = sum;
}

void softmax_scaled(float* x, int64_t n, float scale) {
  float max_score, sum;
  exp_scaled_shifted(x, n, scale, &max_score, &sum);
  const float inv_sum = 1.f / sum;
  for (int64_t t = 0; t < n; ++t) x[t] *= inv_sum;
}

void silu_mul(float* gate, const float* up, int64_t n) {
  map4(gate, gate, n, [&](f32x4 g, int64_t i) {
    f32x4 u = {};
    std::memcpy(&u, up + i, size_t(std::min<int64_t>(4, n - i)) * 4);
    return g / (1.f + exp4(-g)) * u;
  });
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace r1lite
