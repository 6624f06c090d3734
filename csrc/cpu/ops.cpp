#include "cpu/ops.h"

#include <algorithm>
#include <cmath>
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

void softmax_scaled(float* x, int64_t n, float scale) {
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t t = 0; t < n; ++t) max_score = std::max(max_score, x[t] * scale);
  float sum = 0.f;
  for (int64_t t = 0; t < n; ++t) {
    x[t] = std::exp(x[t] * scale - max_score);
    sum += x[t];
  }
  const float inv_sum = 1.f / sum;
  for (int64_t t = 0; t < n; ++t) x[t] *= inv_sum;
}

void silu_mul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.f + std::exp(-g)) * up[i];
  }
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace r1lite
