// Mixture-of-experts FFN (ARCH.md §6 for V3/R1, §10 for V2): a router picks experts_per_token
// routed experts per token with weights; the output is their weighted sum plus the shared
// experts' output. Tokens are grouped by expert, so each selected expert's weights are read once
// per batch and experts nobody picked are not read at all.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "cpu/matmul.h"
#include "model/model.h"

namespace r1lite {

namespace {

// Indices of the k largest of score[i] for i in `candidates` (ties: lower index first).
void top_k(const float* score, std::vector<int32_t>& candidates, int64_t k) {
  std::partial_sort(candidates.begin(), candidates.begin() + k, candidates.end(),
                    [score](int32_t a, int32_t b) { return score[a] > score[b] || (score[a] == score[b] && a < b); });
  candidates.resize(size_t(k));
}

// One token's experts and weights from its router logits [E].
void route(const ModelConfig& c, const float* logits, const float* bias, int32_t* ids, float* weights) {
  const int64_t E = c.num_experts, k = c.experts_per_token;
  const int64_t groups = c.expert_groups, per_group = E / groups;
  thread_local std::vector<float> prob, choice, group_score;
  thread_local std::vector<int32_t> candidates;
  prob.resize(size_t(E));
  choice.resize(size_t(E));
  group_score.resize(size_t(groups));

  if (c.router == RouterKind::SigmoidGroupTop2) {
    // V3: sigmoid scores; the bias only steers the choice; a group's score is its top two.
    for (int64_t e = 0; e < E; ++e) {
      prob[e] = 1.f / (1.f + std::exp(-logits[e]));
      choice[e] = prob[e] + (bias ? bias[e] : 0.f);
    }
    for (int64_t g = 0; g < groups; ++g) {
      const float* s = &choice[size_t(g * per_group)];
      float first = -INFINITY, second = -INFINITY;
      for (int64_t j = 0; j < per_group; ++j) {
        if (s[j] > first) { second = first; first = s[j]; }
        else if (s[j] > second) second = s[j];
      }
      group_score[g] = first + second;
    }
  } else {
    // V2: softmax scores, chosen as they are; a group's score is its best expert.
    const float max_logit = *std::max_element(logits, logits + E);
    float sum = 0.f;
    for (int64_t e = 0; e < E; ++e) sum += prob[e] = std::exp(logits[e] - max_logit);
    for (int64_t e = 0; e < E; ++e) choice[e] = prob[e] /= sum;
    for (int64_t g = 0; g < groups; ++g)
      group_score[g] = *std::max_element(&choice[size_t(g * per_group)], &choice[size_t((g + 1) * per_group)]);
  }

  // Keep the best groups (all of them for the greedy router), then the top k of their experts.
  const int64_t kept = c.router == RouterKind::SoftmaxGreedy ? groups : c.expert_groups_kept;
  candidates.resize(size_t(groups));
  std::iota(candidates.begin(), candidates.end(), 0);
  top_k(group_score.data(), candidates, kept);
  std::vector<int32_t> kept_groups = candidates;
  candidates.clear();
  for (int32_t g : kept_groups)
    for (int64_t j = 0; j < per_group; ++j) candidates.push_back(int32_t(g * per_group + j));
  top_k(choice.data(), candidates, k);

  float sum = 0.f;
  for (int64_t j = 0; j < k; ++j) {
    ids[j] = candidates[size_t(j)];
    weights[j] = prob[size_t(ids[j])];  // unbiased score
    sum += weights[j];
  }
  const float norm = c.normalize_expert_weights ? 1.f / (sum + 1e-20f) : 1.f;
  for (int64_t j = 0; j < k; ++j) weights[j] *= norm * c.routed_scale;
}

}  // namespace

void Model::moe_block(int64_t li, int64_t n) {
  const ModelConfig& c = cfg_;
  const LayerWeights& l = w_.layers[size_t(li)];
  const int64_t D = c.hidden_size, E = c.num_experts, k = c.experts_per_token;
  matmul(pool_, s_.xn.data(), n, l.router, s_.router_logits.data());  // f32 router (§6 step 1)
  for (int64_t i = 0; i < n; ++i)
    route(c, &s_.router_logits[size_t(i * E)], l.router_bias.empty() ? nullptr : l.router_bias.f32(),
          &s_.expert_ids[size_t(i * k)], &s_.expert_weights[size_t(i * k)]);

  // Each expert over the tokens that chose it (in token order), weighted into `routed`.
  std::vector<std::vector<int64_t>> slots(static_cast<size_t>(E));  // (token, choice) i*k + j
  for (int64_t s = 0; s < n * k; ++s) slots[size_t(s_.expert_ids[size_t(s)])].push_back(s);
  std::fill(s_.routed.begin(), s_.routed.begin() + n * D, 0.f);
  for (int64_t e = 0; e < E; ++e) {
    const auto& mine = slots[size_t(e)];
    const int64_t m = int64_t(mine.size());
    if (m == 0) continue;
    for (int64_t r = 0; r < m; ++r)
      std::copy_n(&s_.xn[size_t(mine[size_t(r)] / k * D)], D, &s_.expert_in[size_t(r * D)]);
    swiglu(l.experts[size_t(e)], s_.expert_in.data(), m, c.moe_intermediate_size, s_.expert_out.data());
    for (int64_t r = 0; r < m; ++r) {
      const int64_t slot = mine[size_t(r)];
      const float w = s_.expert_weights[size_t(slot)];
      float* dst = &s_.routed[size_t(slot / k * D)];
      const float* src = &s_.expert_out[size_t(r * D)];
      for (int64_t j = 0; j < D; ++j) dst[j] += w * src[j];
    }
  }

  if (c.num_shared_experts > 0) {
    swiglu(l.shared, s_.xn.data(), n, c.moe_intermediate_size * c.num_shared_experts, s_.proj.data());
    for (int64_t j = 0; j < n * D; ++j) s_.proj[size_t(j)] += s_.routed[size_t(j)];
  } else {
    std::copy_n(s_.routed.begin(), n * D, s_.proj.begin());
  }
}

}  // namespace r1lite
