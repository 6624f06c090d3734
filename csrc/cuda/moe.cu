// Mixture-of-experts on the device (ARCH.md §6 for V3/R1, §10 for V2): the router, the sort of
// (token, choice) slots by expert that lets one grouped matmul run every chosen expert over its
// own tokens, and the weighted combination. Everything stays on the device, so a decode step can
// be one captured graph.
#include "cuda/cuda_check.h"
#include "cuda/kernels.cuh"
#include "model/config.h"
#include "model/router.h"

namespace r1lite::cuda {

namespace {

// One block per token; its first thread routes it (router.h) in shared memory.
__global__ void route_kernel(RouterArgs a, const float* logits, int32_t* ids, float* weights) {
  if (threadIdx.x != 0) return;
  extern __shared__ float smem[];
  const int64_t i = blockIdx.x;
  route_token(a, logits + i * a.experts, smem, reinterpret_cast<uint8_t*>(smem + a.scratch_floats()),
              ids + i * a.k, weights + i * a.k);
}

// One block: a thread per expert counts its slots, thread 0 turns counts into offsets, then each
// expert's thread lists its slots in token order.
__global__ void expert_lists_kernel(const int32_t* ids, int64_t slots, int64_t experts,
                                    int32_t* offsets, int32_t* slot_at, int32_t* place_of) {
  for (int64_t e = threadIdx.x; e < experts; e += blockDim.x) {
    int32_t count = 0;
    for (int64_t s = 0; s < slots; ++s) count += ids[s] == e;
    offsets[e + 1] = count;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    offsets[0] = 0;
    for (int64_t e = 0; e < experts; ++e) offsets[e + 1] += offsets[e];
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < experts; e += blockDim.x) {
    int32_t place = offsets[e];
    for (int64_t s = 0; s < slots; ++s)
      if (ids[s] == e) {
        slot_at[place] = int32_t(s);
        place_of[s] = place++;
      }
  }
}

__global__ void gather_rows_kernel(const float* src, const int32_t* slot_at, int64_t k, int64_t d,
                                   float* dst) {
  const int64_t p = blockIdx.x, token = slot_at[p] / k;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) dst[p * d + j] = src[token * d + j];
}

__global__ void combine_experts_kernel(const float* expert_out, const int32_t* place_of,
                                       const float* weights, int64_t k, int64_t d, bool accumulate,
                                       float* out) {
  const int64_t i = blockIdx.x;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    float sum = 0.f;
    for (int64_t c = 0; c < k; ++c) sum += weights[i * k + c] * expert_out[place_of[i * k + c] * d + j];
    out[i * d + j] = accumulate ? out[i * d + j] + sum : sum;
  }
}

}  // namespace

void route(const RouterArgs& a, const float* logits, int64_t n, int32_t* ids, float* weights,
           cudaStream_t stream) {
  const size_t smem = size_t(a.scratch_floats()) * sizeof(float) + size_t(a.scratch_flags());
  if (smem > 48 * 1024) throw std::invalid_argument("cuda router: too many experts");
  route_kernel<<<unsigned(n), 32, smem, stream>>>(a, logits, ids, weights);
  CUDA_CHECK_LAUNCH();
}

void expert_lists(const int32_t* ids, int64_t slots, int64_t experts, int32_t* offsets,
                  int32_t* slot_at, int32_t* place_of, cudaStream_t stream) {
  expert_lists_kernel<<<1, 256, 0, stream>>>(ids, slots, experts, offsets, slot_at, place_of);
  CUDA_CHECK_LAUNCH();
}

void gather_rows(const float* src, const int32_t* slot_at, int64_t slots, int64_t k, int64_t d,
                 float* dst, cudaStream_t stream) {
  gather_rows_kernel<<<unsigned(slots), 256, 0, stream>>>(src, slot_at, k, d, dst);
  CUDA_CHECK_LAUNCH();
}

void combine_experts(const float* expert_out, const int32_t* place_of, const float* weights,
                     int64_t n, int64_t k, int64_t d, bool accumulate, float* out,
                     cudaStream_t stream) {
  combine_experts_kernel<<<unsigned(n), 256, 0, stream>>>(expert_out, place_of, weights, k, d,
                                                          accumulate, out);
  CUDA_CHECK_LAUNCH();
}

}  // namespace r1lite::cuda
