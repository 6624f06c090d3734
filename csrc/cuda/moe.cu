// Mixture-of-experts on the device (ARCH.md §6 for V3/R1, §10 for V2): the router, the sort of
// (token, choice) slots by expert that lets one grouped matmul run every chosen expert over its
// own tokens, and the weighted combination. Everything stays on the device, so a decode step can
// be one captured graph.
#include "cuda/cuda_check.h"
#include "cuda/kernels.cuh"
#include "model/config.h"

namespace r1lite::cuda {

namespace {

// The best not-yet-taken index among allowed ones (lowest index on ties, as the CPU's top_k).
__device__ int64_t best_index(const float* score, const bool* allowed, const bool* taken, int64_t count) {
  int64_t best = -1;
  for (int64_t e = 0; e < count; ++e)
    if ((!allowed || allowed[e]) && !taken[e] && (best < 0 || score[e] > score[best])) best = e;
  return best;
}

// One block per token; its first thread routes serially (E ≤ a few hundred) in shared memory:
// prob [E], choice [E], group score [G], allowed [E], taken [E], group taken [G].
__global__ void route_kernel(RouterArgs a, const float* logits, int32_t* ids, float* weights) {
  if (threadIdx.x != 0) return;
  extern __shared__ float smem[];
  const int64_t E = a.experts, G = a.groups, per_group = E / G, k = a.k, i = blockIdx.x;
  float* prob = smem;
  float* choice = prob + E;
  float* group_score = choice + E;
  bool* allowed = reinterpret_cast<bool*>(group_score + G);
  bool* taken = allowed + E;
  bool* group_taken = taken + E;
  const float* x = logits + i * E;

  if (a.kind == int(RouterKind::SigmoidGroupTop2)) {
    // V3: sigmoid scores; the bias steers only the choice; a group scores its top two.
    for (int64_t e = 0; e < E; ++e) {
      prob[e] = 1.f / (1.f + expf(-x[e]));
      choice[e] = prob[e] + (a.bias ? a.bias[e] : 0.f);
    }
    for (int64_t g = 0; g < G; ++g) {
      float first = -INFINITY, second = -INFINITY;
      for (int64_t j = 0; j < per_group; ++j) {
        const float v = choice[g * per_group + j];
        if (v > first) { second = first; first = v; }
        else if (v > second) second = v;
      }
      group_score[g] = first + second;
    }
  } else {
    // V2: softmax scores, chosen as they are; a group scores its best expert.
    float max_logit = x[0];
    for (int64_t e = 1; e < E; ++e) max_logit = fmaxf(max_logit, x[e]);
    float sum = 0.f;
    for (int64_t e = 0; e < E; ++e) sum += prob[e] = expf(x[e] - max_logit);
    for (int64_t e = 0; e < E; ++e) choice[e] = prob[e] /= sum;
    for (int64_t g = 0; g < G; ++g) {
      float best = choice[g * per_group];
      for (int64_t j = 1; j < per_group; ++j) best = fmaxf(best, choice[g * per_group + j]);
      group_score[g] = best;
    }
  }

  // Keep the best groups (all for the greedy router), then the top k of their experts.
  const int64_t kept = a.kind == int(RouterKind::SoftmaxGreedy) ? G : a.groups_kept;
  for (int64_t g = 0; g < G; ++g) group_taken[g] = false;
  for (int64_t e = 0; e < E; ++e) allowed[e] = taken[e] = false;
  for (int64_t j = 0; j < kept; ++j) {
    const int64_t g = best_index(group_score, nullptr, group_taken, G);
    group_taken[g] = true;
    for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) allowed[e] = true;
  }
  float sum = 0.f;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t e = best_index(choice, allowed, taken, E);
    taken[e] = true;
    ids[i * k + j] = int32_t(e);
    weights[i * k + j] = prob[e];  // the unbiased score
    sum += prob[e];
  }
  const float norm = a.normalize ? 1.f / (sum + 1e-20f) : 1.f;
  for (int64_t j = 0; j < k; ++j) weights[i * k + j] *= norm * a.routed_scale;
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
  const size_t smem = size_t(2 * a.experts + a.groups) * sizeof(float) + size_t(2 * a.experts + a.groups);
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
