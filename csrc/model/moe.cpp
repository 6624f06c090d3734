// Mixture-of-experts FFN (ARCH.md §6 for V3/R1, §10 for V2): a router picks experts_per_token
// routed experts per token with weights; the output is their weighted sum plus the shared
// experts' output. Tokens are grouped by expert, so each selected expert's weights are read once
// per batch and experts nobody picked are not read at all.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/matmul.h"
#include "model/model.h"
#include "model/router.h"

namespace r1lite {

void Model::moe_block(int64_t li, int64_t n) {
  const ModelConfig& c = cfg_;
  const LayerWeights& l = w_.layers[size_t(li)];
  const int64_t D = c.hidden_size, E = c.num_experts, k = c.experts_per_token;
  if (recording()) record(l.router, s_.xn.data(), n, D, D);
  matmul(pool_, s_.xn.data(), n, l.router, s_.router_logits.data());  // f32 router (§6 step 1)
  const RouterArgs router = RouterArgs::for_layer(c, l.router_bias.empty() ? nullptr : l.router_bias.f32());
  std::vector<float> floats(size_t(router.scratch_floats()));
  std::vector<uint8_t> flags(size_t(router.scratch_flags()));
  for (int64_t i = 0; i < n; ++i)
    route_token(router, &s_.router_logits[size_t(i * E)], floats.data(), flags.data(),
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
