// Small element-wise operations of the forward pass (portable code, f32 activations).
#pragma once
#include <cstdint>

namespace r1lite {

// out = x / sqrt(mean(x²) + eps) * w, over d values; computed in f32 (ARCH.md §4 "RMSNorm").
void rmsnorm(const float* x, const float* w, int64_t d, float eps, float* out);

// cos/sin of pos·inv_freq[i] times attn_factor, for i < half (half = rotary dims / 2).
void rope_angles(int64_t pos, const float* inv_freq, int64_t half, float attn_factor, float* cos,
                 float* sin);

// RoPE in rotate_half (NeoX) layout on each of n_heads vectors of head_dim values: channel j is
// paired with j + half (ARCH.md §7). Rotates the first 2·half channels of every head.
void rope_rotate_half(float* v, int64_t n_heads, int64_t head_dim, int64_t half, const float* cos,
                      const float* sin);

// x[i] = e^x[i], within 2 ulp (0 below about -87.5, saturating at e^88.3); the exp of the two
// below.
void exp_inplace(float* x, int64_t n);

// x[i] = softmax(scale · x)[i] over n values, in f32 (ARCH.md §4 step 4).
void softmax_scaled(float* x, int64_t n, float scale);
// softmax_scaled's numerator: x[i] = e^(scale·x[i] - m) with m = max(scale·x); *max_out = m and
// *sum_out = Σ x[i] (for partial softmaxes merged later).
void exp_scaled_shifted(float* x, int64_t n, float scale, float* max_out, float* sum_out);

// gate[i] = silu(gate[i]) * up[i]
void silu_mul(float* gate, const float* up, int64_t n);

// x[i] += y[i]
void add_inplace(float* x, const float* y, int64_t n);

}  // namespace r1lite
