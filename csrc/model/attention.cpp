// Grouped-query attention (Qwen2, Qwen3, Llama; ARCH.md §7-8, §11): projections, rotary, the
// cache write and causal attention over each sequence's cache. MLA is in mla.cpp.
#include <algorithm>
#include <cmath>

#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "model/attend.h"
#include "model/model.h"

namespace r1lite {

// proj = wo · attn(rope(q), rope(k), v) of xn; the batch's keys and values go to the cache.
void Model::gqa_block(int64_t li, int64_t n) {
  const ModelConfig& c = cfg_;
  const LayerWeights& l = w_.layers[size_t(li)];
  const int64_t hd = c.head_dim, half = hd / 2;
  const int64_t q_dim = c.num_heads * hd, kv_dim = c.num_kv_heads * hd;
  const Tensor* ws[] = {&l.wq, &l.wk, &l.wv};
  float* ys[] = {s_.q.data(), s_.k.data(), s_.v.data()};
  matmul_many(pool_, s_.xn.data(), n, ws, ys, 3);
  if (recording())
    for (const Tensor* w : ws) record(*w, s_.xn.data(), n, c.hidden_size, c.hidden_size);
  for (int64_t i = 0; i < n; ++i) {
    float* q = &s_.q[size_t(i * q_dim)];
    float* k = &s_.k[size_t(i * kv_dim)];
    float* v = &s_.v[size_t(i * kv_dim)];
    if (c.qkv_bias) {
      add_inplace(q, l.bq.f32(), q_dim);
      add_inplace(k, l.bk.f32(), kv_dim);
      add_inplace(v, l.bv.f32(), kv_dim);
    }
    if (c.qk_norm) {  // Qwen3 (ARCH.md §11): each head's query and key RMS-normed before rotary
      for (int64_t h = 0; h < c.num_heads; ++h) rmsnorm(q + h * hd, l.q_norm.f32(), hd, c.norm_eps, q + h * hd);
      for (int64_t g = 0; g < c.num_kv_heads; ++g) rmsnorm(k + g * hd, l.k_norm.f32(), hd, c.norm_eps, k + g * hd);
    }
    rope_rotate_half(q, c.num_heads, hd, half, &s_.cos[size_t(i * half)], &s_.sin[size_t(i * half)]);
    rope_rotate_half(k, c.num_kv_heads, hd, half, &s_.cos[size_t(i * half)], &s_.sin[size_t(i * half)]);
    const TokenSlot& at = s_.slots[size_t(i)];
    for (int64_t g = 0; g < c.num_kv_heads; ++g) {  // stored once, in the cache's format
      at.cache->store_key(li, g, at.pos, k + g * hd);
      at.cache->store_value(li, g, at.pos, v + g * hd);
    }
  }
  gqa_attention(li, n);
  if (recording()) record(l.wo, s_.att.data(), n, q_dim, q_dim);
  matmul(pool_, s_.att.data(), n, l.wo, s_.proj.data());
}

// Causal grouped-query attention of the batch's n queries, each over its own sequence's cache
// up to its position (the cache already holds the batch's own keys and values). Query heads
// h = g*group .. g*group+group-1 read kv head g; one task is one token and one kv head, so each
// key and value row is read once for its group. Keys and values of a head are contiguous rows
// within a cache page: scores are a small matmul, the outputs one multi-head weighted sum. When a
// token's kv heads are fewer than the threads and its context is long, its positions are cut
// into ranges run as separate tasks and merged (attend.h).
void Model::gqa_attention(int64_t layer, int64_t n) {
  const ModelConfig& c = cfg_;
  const int64_t hd = c.head_dim, q_dim = c.num_heads * hd, group = c.num_heads / c.num_kv_heads;
  const float scale = c.attn_scale_mult / std::sqrt(float(hd));
  SplitPlan& plan = s_.attention_plan;
  plan.build(token_lengths(n), c.num_kv_heads, pool_.size());
  if (!plan.any_split && n > 1) {
    gqa_attention_blocks(layer, n);
    return;
  }
  s_.split_sums.resize(size_t(plan.part_slots() * group * hd));
  s_.split_ml.resize(size_t(plan.part_slots() * 2 * group));
  pool_.parallel_for(plan.tasks(), 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;  // [group][positions]
    thread_local QueryRows queries;
    for (int64_t task = begin; task < end; ++task) {
      int64_t i, g, r;
      plan.locate(task, &i, &g, &r);
      const HeadRows rows{s_.slots[size_t(i)].cache, layer, g, hd, false};
      queries.prepare(rows.cache->format(), &s_.q[size_t(i * q_dim + g * group * hd)], group, hd, hd);
      attend_task(plan, i, g, r, queries, group, group, rows, scale, scores,
                  &s_.att[size_t(i * q_dim + g * group * hd)], s_.split_sums, s_.split_ml);  // heads in a row
    }
  });
  if (plan.any_split) merge_split_attention(n, group, c.num_heads, hd, q_dim, s_.att.data());
}

// Prefill (no token split): runs of up to kQueryBlock consecutive positions of one sequence attend
// as one block (attend_block), one task per block and kv head: a long prompt's keys and values
// are read once per block of queries instead of once per query. Each query's result is the one
// attend() gives it alone.
void Model::gqa_attention_blocks(int64_t layer, int64_t n) {
  constexpr int64_t kQueryBlock = 4;
  const ModelConfig& c = cfg_;
  const int64_t hd = c.head_dim, q_dim = c.num_heads * hd, group = c.num_heads / c.num_kv_heads;
  const float scale = c.attn_scale_mult / std::sqrt(float(hd));
  std::vector<int64_t>& first = s_.query_blocks;  // block k: tokens [first[k], first[k + 1])
  first.clear();
  for (int64_t i = 0; i < n; ++i) {
    const TokenSlot& at = s_.slots[size_t(i)];
    const bool joins = i > 0 && i - first.back() < kQueryBlock && at.cache == s_.slots[size_t(i - 1)].cache &&
                       at.pos == s_.slots[size_t(i - 1)].pos + 1;
    if (!joins) first.push_back(i);
  }
  first.push_back(n);
  const int64_t blocks = int64_t(first.size()) - 1;
  pool_.parallel_for(blocks * c.num_kv_heads, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores, qs, out;
    thread_local QueryRows queries;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t k = task / c.num_kv_heads, g = task % c.num_kv_heads;
      const int64_t i0 = first[size_t(k)], tokens = first[size_t(k + 1)] - i0;
      const HeadRows rows{s_.slots[size_t(i0)].cache, layer, g, hd, false};
      qs.resize(size_t(tokens * group * hd));
      out.resize(qs.size());
      for (int64_t b = 0; b < tokens; ++b)  // the block's query rows, token after token
        std::copy_n(&s_.q[size_t((i0 + b) * q_dim + g * group * hd)], group * hd, &qs[size_t(b * group * hd)]);
      queries.prepare(rows.cache->format(), qs.data(), tokens * group, hd, hd);
      attend_block(queries, group, tokens, s_.slots[size_t(i0)].pos + 1, rows, scale, scores, out.data());
      for (int64_t b = 0; b < tokens; ++b)
        std::copy_n(&out[size_t(b * group * hd)], group * hd, &s_.att[size_t((i0 + b) * q_dim + g * group * hd)]);
    }
  });
}

std::vector<int64_t> Model::token_lengths(int64_t n) const {
  std::vector<int64_t> lens(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) lens[size_t(i)] = s_.slots[size_t(i)].pos + 1;  // positions 0..pos
  return lens;
}

// The split tokens' ranges combined: unit u of token i covers min(block, heads - u·block) heads
// of `dim` output values at out + i·token_stride + u·block·dim (GQA: s_.att; MLA: s_.latent);
// its ranges' partial results are `block` heads apart.
void Model::merge_split_attention(int64_t n, int64_t block, int64_t heads, int64_t dim, int64_t token_stride,
                                  float* out) {
  const SplitPlan& plan = s_.attention_plan;
  pool_.parallel_for(n * plan.units, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task / plan.units, u = task % plan.units, splits = plan.splits[size_t(i)];
      if (splits == 1) continue;
      const int64_t slot = plan.first_part[size_t(i)] + u * splits;
      merge_splits(&s_.split_sums[size_t(slot * block * dim)], &s_.split_ml[size_t(slot * 2 * block)], splits,
                   std::min(block, heads - u * block), block, dim, out + i * token_stride + u * block * dim);
    }
  });
}

}  // namespace r1lite
