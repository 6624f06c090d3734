// The mixture-of-experts router for one token (ARCH.md §6 for V3/R1, §10 for V2), written once
// for the CPU (moe.cpp) and the GPU (cuda/moe.cu, one thread per token). Lowest index first on
// ties, at every choice.
#pragma once
#include <cmath>
#include <cstdint>

#include "model/config.h"
#include "model/kv_layout.h"  // R1LITE_HOST_DEVICE

namespace r1lite {

struct RouterArgs {
  int32_t kind = 0;  // RouterKind
  int64_t experts = 0, groups = 1, groups_kept = 1, k = 0;
  bool normalize = false;
  float routed_scale = 1.f;
  const float* bias = nullptr;  // [E] or null: steers the choice only

  static RouterArgs for_layer(const ModelConfig& c, const float* bias) {
    return {int32_t(c.router), c.num_experts, c.expert_groups, c.expert_groups_kept,
            c.experts_per_token, c.normalize_expert_weights, c.routed_scale, bias};
  }
  // Scratch one token needs: floats, then flag bytes.
  R1LITE_HOST_DEVICE int64_t scratch_floats() const { return 2 * experts + groups; }
  R1LITE_HOST_DEVICE int64_t scratch_flags() const { return 2 * experts + groups; }
};

// The best not-yet-taken index among allowed ones (allowed null: all), lowest index on ties.
R1LITE_HOST_DEVICE inline int64_t router_best(const float* score, const uint8_t* allowed,
                                             const uint8_t* taken, int64_t count) {
  int64_t best = -1;
  for (int64_t e = 0; e < count; ++e)
    if ((!allowed || allowed[e]) && !taken[e] && (best < 0 || score[e] > score[best])) best = e;
  return best;
}

// ids[k] and weights[k] of one token from its router logits [E]. `floats` and `flags` hold
// a.scratch_floats() and a.scratch_flags() values.
R1LITE_HOST_DEVICE inline void route_token(const RouterArgs& a, const float* logits, float* floats,
                                           uint8_t* flags, int32_t* ids, float* weights) {
  const int64_t E = a.experts, G = a.groups, per_group = E / G, k = a.k;
  float* prob = floats;
  float* choice = prob + E;
  float* group_score = choice + E;
  uint8_t* allowed = flags;
  uint8_t* taken = allowed + E;
  uint8_t* group_taken = taken + E;

  if (a.kind == int32_t(RouterKind::SigmoidGroupTop2)) {
    // V3: sigmoid scores; the bias steers only the choice; a group scores its top two.
    for (int64_t e = 0; e < E; ++e) {
      prob[e] = 1.f / (1.f + expf(-logits[e]));
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
    float max_logit = logits[0];
    for (int64_t e = 1; e < E; ++e) max_logit = fmaxf(max_logit, logits[e]);
    float sum = 0.f;
    for (int64_t e = 0; e < E; ++e) sum += prob[e] = expf(logits[e] - max_logit);
    for (int64_t e = 0; e < E; ++e) choice[e] = prob[e] /= sum;
    for (int64_t g = 0; g < G; ++g) {
      float best = choice[g * per_group];
      for (int64_t j = 1; j < per_group; ++j) best = fmaxf(best, choice[g * per_group + j]);
      group_score[g] = best;
    }
  }

  // Keep the best groups (all for the greedy router), then the top k of their experts.
  const int64_t kept = a.kind == int32_t(RouterKind::SoftmaxGreedy) ? G : a.groups_kept;
  for (int64_t g = 0; g < G; ++g) group_taken[g] = 0;
  for (int64_t e = 0; e < E; ++e) allowed[e] = taken[e] = 0;
  for (int64_t j = 0; j < kept; ++j) {
    const int64_t g = router_best(group_score, nullptr, group_taken, G);
    group_taken[g] = 1;
    for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) allowed[e] = 1;
  }
  float sum = 0.f;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t e = router_best(choice, allowed, taken, E);
    taken[e] = 1;
    ids[j] = int32_t(e);
    weights[j] = prob[e];  // the unbiased score
    sum += prob[e];
  }
  const float norm = a.normalize ? 1.f / (sum + 1e-20f) : 1.f;
  for (int64_t j = 0; j < k; ++j) weights[j] *= norm * a.routed_scale;
}

}  // namespace r1lite
