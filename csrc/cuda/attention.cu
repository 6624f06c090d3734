// Causal attention over the paged cache for grouped-query attention and MLA alike (ARCH.md §4,
// §7), split over the context (flash-decoding): block (head, row, split) scores its share of the
// positions with an online softmax (running max m, running sum l, unnormalized output o), one
// position per warp at a time; the splits are then merged:
//   M = max_s m_s,  out = Σ_s e^(m_s − M)·o_s / Σ_s e^(m_s − M)·l_s.
// Memory stays linear in the context: no score matrix is ever stored.
#include <cmath>

#include "cuda/cuda_check.h"
#include "cuda/kernels.cuh"

namespace r1lite::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kValuesPerLane = int(kMaxAttentionValueDim / 32);

// Partial result of one (row, head, split): m, l, then value_dim channels of o.
__device__ inline float* partial_at(float* partial, const AttentionArgs& a, int64_t i, int64_t h,
                                    int64_t s, int64_t splits) {
  return partial + ((i * a.heads + h) * splits + s) * (a.value_dim + 2);
}

__global__ void __launch_bounds__(kWarps * 32) attention_split_kernel(AttentionArgs a, int64_t splits, float* partial) {
  extern __shared__ float smem[];
  const int64_t h = blockIdx.x, i = blockIdx.y, s = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* sq = smem;                                 // [key_dim] the query
  float* merge = smem + a.key_dim;                  // [kWarps][value_dim + 2]
  const float* q = a.q + i * a.ldq + h * a.q_head;
  for (int64_t k = threadIdx.x; k < a.key_dim; k += blockDim.x) sq[k] = q[k];
  __syncthreads();

  const int64_t len = int64_t(a.pos[i]) + 1, chunk = (len + splits - 1) / splits;
  const int64_t p0 = s * chunk, p1 = min(len, p0 + chunk);
  const int64_t g = h / a.group;
  float m = -INFINITY, l = 0.f, o[kValuesPerLane] = {};
  for (int64_t p = p0 + warp; p < p1; p += kWarps) {
    const float* key = a.cache.key(a.layer, g, p);
    float dot = 0.f;
    for (int64_t k = lane; k < a.key_dim; k += 32) dot += sq[k] * key[k];
    const float score = warp_sum(dot) * a.scale;
    const float m_new = fmaxf(m, score);
    const float keep = expf(m - m_new), weight = expf(score - m_new);  // e^(−inf) = 0 at the start
    l = l * keep + weight;
    const float* value = a.values_in_keys ? key : a.cache.value(a.layer, g, p);
#pragma unroll
    for (int j = 0; j < kValuesPerLane; ++j) {
      const int64_t c = lane + 32 * j;
      if (c < a.value_dim) o[j] = o[j] * keep + weight * value[c];
    }
    m = m_new;
  }

  float* mine = merge + warp * (a.value_dim + 2);
  if (lane == 0) { mine[0] = m; mine[1] = l; }
#pragma unroll
  for (int j = 0; j < kValuesPerLane; ++j) {
    const int64_t c = lane + 32 * j;
    if (c < a.value_dim) mine[2 + c] = o[j];
  }
  __syncthreads();
  float best = -INFINITY;
  for (int w = 0; w < kWarps; ++w) best = fmaxf(best, merge[w * (a.value_dim + 2)]);
  float* dst = partial_at(partial, a, i, h, s, splits);
  float factor[kWarps];
  float total = 0.f;
  for (int w = 0; w < kWarps; ++w) {
    const float mw = merge[w * (a.value_dim + 2)];
    factor[w] = mw == -INFINITY ? 0.f : expf(mw - best);  // a warp that saw no position adds nothing
    total += factor[w] * merge[w * (a.value_dim + 2) + 1];
  }
  if (threadIdx.x == 0) { dst[0] = best; dst[1] = total; }
  for (int64_t c = threadIdx.x; c < a.value_dim; c += blockDim.x) {
    float sum = 0.f;
    for (int w = 0; w < kWarps; ++w) sum += factor[w] * merge[w * (a.value_dim + 2) + 2 + c];
    dst[2 + c] = sum;
  }
}

__global__ void attention_merge_kernel(AttentionArgs a, int64_t splits, const float* partial) {
  const int64_t h = blockIdx.x, i = blockIdx.y;
  const float* first = partial + ((i * a.heads + h) * splits) * (a.value_dim + 2);
  float best = -INFINITY;
  for (int64_t s = 0; s < splits; ++s) best = fmaxf(best, first[s * (a.value_dim + 2)]);
  float total = 0.f;
  for (int64_t s = 0; s < splits; ++s) {
    const float ms = first[s * (a.value_dim + 2)];
    if (ms != -INFINITY) total += expf(ms - best) * first[s * (a.value_dim + 2) + 1];
  }
  const float inv_total = 1.f / total;  // split 0 always holds position 0: total > 0
  float* out = a.out + i * a.ldo + h * a.value_dim;
  for (int64_t c = threadIdx.x; c < a.value_dim; c += blockDim.x) {
    float sum = 0.f;
    for (int64_t s = 0; s < splits; ++s) {
      const float ms = first[s * (a.value_dim + 2)];
      if (ms != -INFINITY) sum += expf(ms - best) * first[s * (a.value_dim + 2) + 2 + c];
    }
    out[c] = sum * inv_total;
  }
}

}  // namespace

int64_t attention_splits(int64_t n, int64_t heads, int sms) {
  // Enough blocks for two per multiprocessor; one split once the rows and heads fill the device.
  const int64_t want = ceil_div(2 * int64_t(sms), n * heads);
  return want < 1 ? 1 : (want > 32 ? 32 : want);
}

int64_t attention_partial_floats(int64_t n, int64_t heads, int64_t value_dim, int64_t splits) {
  return n * heads * splits * (value_dim + 2);
}

void attention(const AttentionArgs& a, int64_t n, int64_t splits, float* partial, cudaStream_t stream) {
  if (a.value_dim > kMaxAttentionValueDim)
    throw std::invalid_argument("cuda attention: value dim above " + std::to_string(kMaxAttentionValueDim));
  const size_t smem = size_t(a.key_dim + kWarps * (a.value_dim + 2)) * sizeof(float);
  const dim3 grid(unsigned(a.heads), unsigned(n), unsigned(splits));
  attention_split_kernel<<<grid, kWarps * 32, smem, stream>>>(a, splits, partial);
  CUDA_CHECK_LAUNCH();
  attention_merge_kernel<<<dim3(unsigned(a.heads), unsigned(n)), 128, 0, stream>>>(a, splits, partial);
  CUDA_CHECK_LAUNCH();
}

}  // namespace r1lite::cuda
