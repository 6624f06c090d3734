// DeepSeek's multi-head latent attention in its absorbed form (ARCH.md §4), for prefill and
// decode alike. The cache holds per position only the normalized latent c (C values) and the
// rotated rope key (dr values). For head h:
//   q̃_h = W_UK[h]ᵀ·q_nope_h                      (w_uk_t: W_UK[h]ᵀ stored row-major [C, dn])
//   score_h(t) = (q̃_h·c_t + q_pe_h·k_pe_t) · scale   one dot product with the cache row [c_t | k_pe_t]
//   ō_h = Σ_t softmax(score_h)(t) · c_t ;  o_h = W_UV[h]·ō_h ;  out = wo · concat_h(o_h)
// which equals the expanded form of transformers (keys and values from kv_b for every position)
// by associativity, while reading C + dr values per cached position instead of H·(qk + dv).
#include <algorithm>
#include <cmath>

#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "model/model.h"

namespace r1lite {

void Model::mla_block(int64_t li, int64_t n) {
  const ModelConfig& c = cfg_;
  const LayerWeights& l = w_.layers[size_t(li)];
  const int64_t H = c.num_heads, C = c.kv_lora_rank, dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim;
  const int64_t qk = dn + dr, row = C + dr, half = dr / 2, ql = c.q_lora_rank;

  {  // the two projections of xn (q or q_a, and kv_a) in one parallel section
    const Tensor* ws[] = {ql == 0 ? &l.wq : &l.wq_a, &l.wkv_a};
    float* ys[] = {ql == 0 ? s_.q.data() : s_.q_a.data(), s_.kv_a.data()};
    matmul_many(pool_, s_.xn.data(), n, ws, ys, 2);
    if (recording())
      for (const Tensor* w : ws) record(*w, s_.xn.data(), n, c.hidden_size, c.hidden_size);
  }
  if (ql > 0) {
    for (int64_t i = 0; i < n; ++i) {
      float* qa = &s_.q_a[size_t(i * ql)];
      rmsnorm(qa, l.q_a_norm.f32(), ql, kLatentNormEps, qa);
    }
    if (recording()) record(l.wq_b, s_.q_a.data(), n, ql, ql);
    matmul(pool_, s_.q_a.data(), n, l.wq_b, s_.q.data());
  }

  for (int64_t i = 0; i < n; ++i) {
    const float* cos = &s_.cos[size_t(i * half)];
    const float* sin = &s_.sin[size_t(i * half)];
    float* q = &s_.q[size_t(i * H * qk)];
    rope_rotate_half(q + dn, H, qk, half, cos, sin);  // each head's last dr channels
    // The cache row: the normalized latent, then the rotated rope key, stored once.
    float* kva = &s_.kv_a[size_t(i * row)];
    rmsnorm(kva, l.kv_a_norm.f32(), C, kLatentNormEps, kva);
    rope_rotate_half(kva + C, 1, dr, half, cos, sin);
    s_.slots[size_t(i)].cache->store_key(li, 0, s_.slots[size_t(i)].pos, kva);
    for (int64_t h = 0; h < H; ++h)  // q_pe beside the absorbed nope part
      std::copy_n(q + h * qk + dn, dr, &s_.q_abs[size_t((i * H + h) * row + C)]);
  }
  // q̃_h = W_UK[h]ᵀ·q_nope_h into the first C values of each absorbed query
  if (recording())  // per head, as llama.cpp's attn_k_b [H, C, dn]
    for (int64_t h = 0; h < H; ++h) record(l.w_uk_t, s_.q.data() + h * qk, n, H * qk, dn, h, H);
  matmul_heads(pool_, s_.q.data(), n, H * qk, qk, l.w_uk_t, H, s_.q_abs.data(), H * row, row);
  mla_attention(li, n);
  // o_h = W_UV[h]·ō_h, then the output projection
  if (recording())  // per head, as llama.cpp's attn_v_b [H, dv, C]
    for (int64_t h = 0; h < H; ++h) record(l.w_uv, s_.latent.data() + h * C, n, H * C, C, h, H);
  matmul_heads(pool_, s_.latent.data(), n, H * C, C, l.w_uv, H, s_.att.data(), H * c.v_head_dim,
               c.v_head_dim);
  if (recording()) record(l.wo, s_.att.data(), n, H * c.v_head_dim, H * c.v_head_dim);
  matmul(pool_, s_.att.data(), n, l.wo, s_.proj.data());
}

// All heads share one cache row per position (the latent is the "key" of every head, MQA-like):
// a task is one token and a block of heads, scoring the block's absorbed queries against the
// cache rows as a small matmul. Decode splits the heads so that every thread has work; a long
// context is cut into position ranges instead (attend.h), so that each task reads its rows once
// for all heads rather than every head block reading the whole cache.
void Model::mla_attention(int64_t layer, int64_t n) {
  const ModelConfig& c = cfg_;
  const int64_t H = c.num_heads, C = c.kv_lora_rank, row = C + c.qk_rope_head_dim;
  // ARCH.md §4 step 5: qk_head_dim^-0.5 (not the dot length C + dr), times YaRN's mscale².
  const float scale = c.attn_scale_mult / std::sqrt(float(c.qk_nope_head_dim + c.qk_rope_head_dim));
  const std::vector<int64_t> lens = token_lengths(n);
  const int64_t threads = pool_.size();
  int64_t most_splits = 1;  // head blocks only make up for threads the ranges leave idle
  for (int64_t len : lens) most_splits = std::max(most_splits, attention_splits(len, 1, threads));
  const int64_t spread = most_splits > 1 ? threads : 2 * threads;
  const int64_t blocks_per_token = std::min(H, std::max<int64_t>(1, (spread + n * most_splits - 1) / (n * most_splits)));
  const int64_t block = (H + blocks_per_token - 1) / blocks_per_token;
  const int64_t n_blocks = (H + block - 1) / block;
  SplitPlan& plan = s_.attention_plan;
  plan.build(lens, n_blocks, threads);
  s_.split_sums.resize(size_t(plan.part_slots() * block * C));
  s_.split_ml.resize(size_t(plan.part_slots() * 2 * block));
  pool_.parallel_for(plan.tasks(), 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;  // [heads of the block][positions]
    thread_local QueryRows queries;
    for (int64_t task = begin; task < end; ++task) {
      int64_t i, b, r;
      plan.locate(task, &i, &b, &r);
      const int64_t h0 = b * block, heads = std::min(block, H - h0);
      const HeadRows rows{s_.slots[size_t(i)].cache, layer, 0, C, true};  // the latent part of each row
      queries.prepare(rows.cache->format(), &s_.q_abs[size_t((i * H + h0) * row)], heads, row, row);
      attend_task(plan, i, b, r, queries, heads, block, rows, scale, scores, &s_.latent[size_t((i * H + h0) * C)],
                  s_.split_sums, s_.split_ml);  // the block's heads in a row
    }
  });
  if (plan.any_split) merge_split_attention(n, block, H, C, H * C, s_.latent.data());
}

}  // namespace r1lite
