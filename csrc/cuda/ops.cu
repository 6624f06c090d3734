// The element-wise and per-row operations of the forward pass: the same math as csrc/cpu/ops.cpp
// (ARCH.md §4 RMSNorm, §7 RoPE), one block or one thread per row or element.
#include "cuda/cuda_check.h"
#include "cuda/kernels.cuh"

namespace r1lite::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void embed_kernel(DevMatrix emb, const int32_t* tokens, float* x) {
  const int64_t i = blockIdx.x, D = emb.cols;
  for (int64_t k = threadIdx.x; k < D; k += blockDim.x) x[i * D + k] = weight_value(emb, tokens[i], k);
}

// The CPU's order: out = w · (x · 1/sqrt(mean(x²) + eps)).
__device__ void rmsnorm_row(const float* x, const float* w, int64_t d, float eps, float* out) {
  __shared__ float scratch[32];
  float ss = 0.f;
  for (int64_t k = threadIdx.x; k < d; k += blockDim.x) ss += x[k] * x[k];
  ss = block_sum(ss, scratch);
  const float inv = 1.f / sqrtf(ss / float(d) + eps);
  for (int64_t k = threadIdx.x; k < d; k += blockDim.x) out[k] = w[k] * (x[k] * inv);
}

__global__ void rmsnorm_kernel(const float* x, int64_t ldx, const float* w, int64_t d, float eps,
                               float* out, int64_t ldo) {
  const int64_t i = blockIdx.x;
  rmsnorm_row(x + i * ldx, w, d, eps, out + i * ldo);
}

__device__ inline void rotate_pair(const float* src, float* dst, int64_t j, int64_t half,
                                   int32_t pos, const float* inv_freq, float attn_factor) {
  const float angle = float(pos) * inv_freq[j];  // f32 product, as transformers computes it
  const float c = cosf(angle) * attn_factor, s = sinf(angle) * attn_factor;
  const float a = src[j], b = src[j + half];
  dst[j] = a * c - b * s;
  dst[j + half] = b * c + a * s;
}

__global__ void rope_kernel(RopeArgs a) {
  const int64_t i = blockIdx.x;
  for (int64_t t = threadIdx.x; t < a.heads * a.half; t += blockDim.x) {
    const int64_t h = t / a.half, j = t % a.half;
    rotate_pair(a.src + i * a.ld_src + h * a.src_head, a.dst + i * a.ld_dst + h * a.dst_head, j,
                a.half, a.pos[i], a.inv_freq, a.attn_factor);
  }
}

__global__ void add_bias_kernel(float* x, int64_t ld, const float* b, int64_t d) {
  const int64_t i = blockIdx.x;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) x[i * ld + j] += b[j];
}

__global__ void add_kernel(float* x, const float* y, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) x[i] += y[i];
}

__global__ void silu_mul_kernel(float* gate, const float* up, int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) {
    const float g = gate[i];
    gate[i] = g / (1.f + expf(-g)) * up[i];
  }
}

__global__ void store_kv_kernel(const float* k, const float* v, CacheView cache, int64_t layer,
                                const int32_t* pos) {
  const int64_t i = blockIdx.x, dim = cache.layout.key_dim, width = cache.layout.heads * dim;
  for (int64_t t = threadIdx.x; t < width; t += blockDim.x) {
    const int64_t g = t / dim, j = t % dim;
    cache.key(layer, g, pos[i])[j] = k[i * width + t];
    cache.value(layer, g, pos[i])[j] = v[i * width + t];
  }
}

__global__ void store_latent_kernel(const float* kv_a, int64_t C, int64_t dr, const float* norm_w,
                                    float eps, CacheView cache, int64_t layer, const int32_t* pos,
                                    const float* inv_freq, float attn_factor) {
  const int64_t i = blockIdx.x, row = C + dr;
  const float* src = kv_a + i * row;
  float* slot = cache.key(layer, 0, pos[i]);
  rmsnorm_row(src, norm_w, C, eps, slot);
  for (int64_t j = threadIdx.x; j < dr / 2; j += blockDim.x)
    rotate_pair(src + C, slot + C, j, dr / 2, pos[i], inv_freq, attn_factor);
}

__global__ void argmax_kernel(const float* x, int64_t count, int32_t* out) {
  __shared__ float best_value[kThreads];
  __shared__ int64_t best_index[kThreads];
  // Each thread's best (lowest index among equals); index == count: it saw nothing, and loses.
  float value = -INFINITY;
  int64_t index = count;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x)
    if (index == count || x[i] > value) { value = x[i]; index = i; }
  best_value[threadIdx.x] = value;
  best_index[threadIdx.x] = index;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (int(threadIdx.x) < stride) {
      const float v = best_value[threadIdx.x + stride], mine = best_value[threadIdx.x];
      const int64_t j = best_index[threadIdx.x + stride], own = best_index[threadIdx.x];
      if (j != count && (own == count || v > mine || (v == mine && j < own))) {
        best_value[threadIdx.x] = v;
        best_index[threadIdx.x] = j;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = int32_t(best_index[0]);
}

unsigned elementwise_blocks(int64_t count) { return unsigned(ceil_div(count, kThreads)); }

}  // namespace

void embed(const DevMatrix& emb, const int32_t* tokens, int64_t n, float* x, cudaStream_t stream) {
  embed_kernel<<<unsigned(n), kThreads, 0, stream>>>(emb, tokens, x);
  CUDA_CHECK_LAUNCH();
}

void rmsnorm(const float* x, int64_t ldx, const float* w, int64_t d, float eps, float* out,
             int64_t ldo, int64_t n, cudaStream_t stream) {
  rmsnorm_kernel<<<unsigned(n), kThreads, 0, stream>>>(x, ldx, w, d, eps, out, ldo);
  CUDA_CHECK_LAUNCH();
}

void rope(const RopeArgs& a, int64_t n, cudaStream_t stream) {
  rope_kernel<<<unsigned(n), kThreads, 0, stream>>>(a);
  CUDA_CHECK_LAUNCH();
}

void add_bias(float* x, int64_t ld, const float* b, int64_t d, int64_t n, cudaStream_t stream) {
  add_bias_kernel<<<unsigned(n), kThreads, 0, stream>>>(x, ld, b, d);
  CUDA_CHECK_LAUNCH();
}

void add(float* x, const float* y, int64_t count, cudaStream_t stream) {
  add_kernel<<<elementwise_blocks(count), kThreads, 0, stream>>>(x, y, count);
  CUDA_CHECK_LAUNCH();
}

void silu_mul(float* gate, const float* up, int64_t count, cudaStream_t stream) {
  silu_mul_kernel<<<elementwise_blocks(count), kThreads, 0, stream>>>(gate, up, count);
  CUDA_CHECK_LAUNCH();
}

void store_kv(const float* k, const float* v, int64_t n, const CacheView& cache, int64_t layer,
              const int32_t* pos, cudaStream_t stream) {
  store_kv_kernel<<<unsigned(n), kThreads, 0, stream>>>(k, v, cache, layer, pos);
  CUDA_CHECK_LAUNCH();
}

void store_latent(const float* kv_a, int64_t n, int64_t C, int64_t dr, const float* norm_w,
                  float eps, const CacheView& cache, int64_t layer, const int32_t* pos,
                  const float* inv_freq, float attn_factor, cudaStream_t stream) {
  store_latent_kernel<<<unsigned(n), kThreads, 0, stream>>>(kv_a, C, dr, norm_w, eps, cache, layer,
                                                            pos, inv_freq, attn_factor);
  CUDA_CHECK_LAUNCH();
}

void argmax(const float* x, int64_t count, int32_t* out, cudaStream_t stream) {
  argmax_kernel<<<1, kThreads, 0, stream>>>(x, count, out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace r1lite::cuda
