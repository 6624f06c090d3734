// Mixture-of-experts FFN (ARCH.md §6 for V3/R1, §10 for V2): a router picks experts_per_token
// routed experts per token with weights; the output is their weighted sum plus the shared
// experts' output. Tokens are grouped by expert, so each selected expert's weights are read once
// per batch and experts nobody picked are not read at all.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/matmul.h"
#include "cpu/ops.h"
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

  if (n == 1 && !recording()) return moe_one_token(l);

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

// One token (a decode step): its k experts' and the shared experts' gate and up projections in
// one parallel section (one input, quantized once), their down projections in another; then
// the same sums in the same order as moe_block's (routed experts by ascending id from zero, then
// added to the shared experts' output), so the token gets the same bits as in a batch.
void Model::moe_one_token(const LayerWeights& l) {
  const ModelConfig& c = cfg_;
  const int64_t D = c.hidden_size, k = c.experts_per_token, F = c.moe_intermediate_size;
  const int64_t shared = F * c.num_shared_experts;
  std::vector<int64_t> order(static_cast<size_t>(k));  // choices by ascending expert id
  for (int64_t j = 0; j < k; ++j) order[size_t(j)] = j;
  std::sort(order.begin(), order.end(),
            [&](int64_t a, int64_t b) { return s_.expert_ids[size_t(a)] < s_.expert_ids[size_t(b)]; });
  std::vector<const Tensor*> ws;
  std::vector<float*> ys;
  for (int64_t j = 0; j < k; ++j) {
    const FfnWeights& f = l.experts[size_t(s_.expert_ids[size_t(j)])];
    ws.insert(ws.end(), {&f.w_gate, &f.w_up});
    ys.insert(ys.end(), {&s_.chosen_gate[size_t(j * F)], &s_.chosen_up[size_t(j * F)]});
  }
  if (shared > 0) {
    ws.insert(ws.end(), {&l.shared.w_gate, &l.shared.w_up});
    ys.insert(ys.end(), {s_.gate.data(), s_.up.data()});
  }
  matmul_many(pool_, s_.xn.data(), 1, ws.data(), ys.data(), int(ws.size()));
  silu_mul(s_.chosen_gate.data(), s_.chosen_up.data(), k * F);
  if (shared > 0) silu_mul(s_.gate.data(), s_.up.data(), shared);
  // the down projections, each of its own input, in one section too
  std::vector<const float*> xs;
  ws.clear();
  ys.clear();
  for (int64_t j = 0; j < k; ++j) {
    xs.push_back(&s_.chosen_gate[size_t(j * F)]);
    ws.push_back(&l.experts[size_t(s_.expert_ids[size_t(j)])].w_down);
    ys.push_back(&s_.chosen_out[size_t(j * D)]);
  }
  if (shared > 0) {
    xs.push_back(s_.gate.data());
    ws.push_back(&l.shared.w_down);
    ys.push_back(s_.proj.data());
  }
  matmul_each(pool_, xs.data(), 1, ws.data(), ys.data(), int(ws.size()));
  float* routed = s_.routed.data();
  std::fill(routed, routed + D, 0.f);
  for (int64_t j : order) {
    const float w = s_.expert_weights[size_t(j)];
    const float* src = &s_.chosen_out[size_t(j * D)];
    for (int64_t i = 0; i < D; ++i) routed[i] += w * src[i];
  }
  if (shared > 0) {
    for (int64_t i = 0; i < D; ++i) s_.proj[size_t(i)] += routed[i];
  } else {
    std::copy_n(routed, D, s_.proj.begin());
  }
}

}  // namespace r1lite
