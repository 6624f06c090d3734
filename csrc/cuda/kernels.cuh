// Launchers of the CUDA kernels (each checks its launch). Activations are f32, as on the CPU;
// every function enqueues on `stream` and returns without waiting.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/device_types.cuh"
#include "model/router.h"

namespace r1lite::cuda {

// ---- matmul.cu ----
// Rows whose product takes the one-row kernel (a warp per output, decode); more rows per group
// take the tiled kernel (prefill).
constexpr int64_t kMaxDecodeRows = 8;
// 32-value blocks of quantized activations a problem needs (the scratch holds blocks·32 quants).
int64_t quantized_blocks(const MatmulProblem& p);
// y = x·Wᵀ for every group. Quantized weights first quantize x into `scratch` (int8 blocks, as
// the CPU does, so both round alike), then take int8 dot products (dp4a).
void matmul(const MatmulProblem& p, const QuantizedActivations& scratch, cudaStream_t stream);

// ---- ops.cu ----
// x[i] = row tokens[i] of the embedding (any format), n rows of D.
void embed(const DevMatrix& emb, const int32_t* tokens, int64_t n, float* x, cudaStream_t stream);
// out[i] = rmsnorm(x[i]) · w over d values, n rows (x and out may be the same rows).
void rmsnorm(const float* x, int64_t ldx, const float* w, int64_t d, float eps, float* out,
             int64_t ldo, int64_t n, cudaStream_t stream);
// RoPE in rotate-half layout (ARCH.md §7) on `heads` vectors per row: channel j of head h at
// src + i*ld_src + h*src_head + j pairs with j + half; the rotated values go to the same place
// in dst (dst may be src). Angles pos[i]·inv_freq[j] in f32, cos/sin times attn_factor.
struct RopeArgs {
  const float* src; int64_t ld_src, src_head;
  float* dst; int64_t ld_dst, dst_head;
  int64_t heads, half;
  const int32_t* pos; const float* inv_freq; float attn_factor;
};
void rope(const RopeArgs& a, int64_t n, cudaStream_t stream);
// x[i*ld + j] += b[j] for j < d.
void add_bias(float* x, int64_t ld, const float* b, int64_t d, int64_t n, cudaStream_t stream);
// x += y over count values.
void add(float* x, const float* y, int64_t count, cudaStream_t stream);
// gate = silu(gate) · up over count values.
void silu_mul(float* gate, const float* up, int64_t count, cudaStream_t stream);
// Grouped-query attention's cache write: kv head g of rows k, v [n, heads·dim] to position pos[i].
void store_kv(const float* k, const float* v, int64_t n, const CacheView& cache, int64_t layer,
              const int32_t* pos, cudaStream_t stream);
// MLA's cache write (ARCH.md §4): row i of kv_a [n, C + dr] becomes rmsnorm(latent)·w | rope(k_pe).
void store_latent(const float* kv_a, int64_t n, int64_t C, int64_t dr, const float* norm_w,
                  float eps, const CacheView& cache, int64_t layer, const int32_t* pos,
                  const float* inv_freq, float attn_factor, cudaStream_t stream);
// The index of the largest of x[0..count) (lowest index on ties) into *out.
void argmax(const float* x, int64_t count, int32_t* out, cudaStream_t stream);

// ---- attention.cu ----
// Causal attention of n queries over the cache (positions 0..pos[i] of each), split over the
// context in `splits` parts merged with their softmax maxima (flash-decoding). Query head h of
// row i (key_dim values at q + i*ldq + h*q_head) reads kv head h / group; output value_dim values
// at out + i*ldo + h*value_dim. MLA: one kv head whose value is the first value_dim channels
// of its key row (values_in_keys).
struct AttentionArgs {
  const float* q; int64_t ldq, q_head;
  CacheView cache; int64_t layer;
  bool values_in_keys;
  int64_t heads, group, key_dim, value_dim;
  const int32_t* pos;
  float scale;
  float* out; int64_t ldo;
};
constexpr int64_t kMaxAttentionValueDim = 512;
// Splits worth using for n rows of `heads` heads on a device of `sms` multiprocessors.
int64_t attention_splits(int64_t n, int64_t heads, int sms);
// Floats of the partial results buffer for n rows.
int64_t attention_partial_floats(int64_t n, int64_t heads, int64_t value_dim, int64_t splits);
void attention(const AttentionArgs& a, int64_t n, int64_t splits, float* partial,
               cudaStream_t stream);

// ---- moe.cu ----
// Router of ARCH.md §6 / §10 on logits [n, E]: ids and weights [n, k], router.h's route_token
// for each token (the CPU's choices exactly).
void route(const RouterArgs& a, const float* logits, int64_t n, int32_t* ids, float* weights,
           cudaStream_t stream);
// Slots s = i*k + j sorted by expert (token order within one): offsets [E + 1], slot_at [n*k]
// (the slot at each sorted place) and place_of [n*k] (each slot's place).
void expert_lists(const int32_t* ids, int64_t slots, int64_t experts, int32_t* offsets,
                  int32_t* slot_at, int32_t* place_of, cudaStream_t stream);
// dst[p] = src[slot_at[p] / k] for p < slots, rows of d values.
void gather_rows(const float* src, const int32_t* slot_at, int64_t slots, int64_t k, int64_t d,
                 float* dst, cudaStream_t stream);
// out[i] (+)= Σ_j weights[i*k + j] · expert_out[place_of[i*k + j]] for n rows of d values;
// `accumulate` adds to out (the shared experts' output) instead of overwriting it.
void combine_experts(const float* expert_out, const int32_t* place_of, const float* weights,
                     int64_t n, int64_t k, int64_t d, bool accumulate, float* out,
                     cudaStream_t stream);

}  // namespace r1lite::cuda
