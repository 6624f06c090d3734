// The forward pass: one function for every architecture. Each layer is an attention block
// (grouped-query, ARCH.md §7-8: attention.cpp, or DeepSeek's MLA, §4: mla.cpp) and an FFN block
// (dense SwiGLU or mixture of experts, §6: moe.cpp), both pre-norm with a residual add:
//   x += attention(rmsnorm(x, attn_norm));  x += ffn(rmsnorm(x, ffn_norm))
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "model/model.h"

namespace r1lite {

void check_tokens(const int32_t* tokens, int64_t n, int64_t vocab_size) {
  if (n <= 0) throw std::invalid_argument("forward: no tokens");
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab_size)
      throw std::invalid_argument("token id " + std::to_string(tokens[i]) + " at index " +
                                  std::to_string(i) + " is outside the vocabulary [0, " +
                                  std::to_string(vocab_size) + ")");
}

void Model::forward(const int32_t* tokens, int64_t n, bool all_logits, float* logits) {
  check_tokens(tokens, n, cfg_.vocab_size);
  KVCache& cache = *caches_[0];
  const int64_t pos0 = cache.length;
  cache.reserve(pos0 + n);  // throws when the context is full
  s_.slots.resize(size_t(n));
  std::vector<int64_t> out_rows;
  for (int64_t i = 0; i < n; ++i) {
    s_.slots[size_t(i)] = {&cache, pos0 + i};
    if (all_logits || i == n - 1) out_rows.push_back(i);
  }
  hidden_rows_ = 0;
  run(tokens, n, out_rows.data(), int64_t(out_rows.size()), logits);
  cache.length = pos0 + n;
  hidden_rows_ = n;
}

void Model::forward_batch(const int32_t* tokens, const int64_t* seg_seq, const int64_t* seg_len,
                          int64_t n_seg, float* logits) {
  forward_batch_rows(tokens, seg_seq, seg_len, nullptr, n_seg, logits);
}

void Model::forward_batch_rows(const int32_t* tokens, const int64_t* seg_seq, const int64_t* seg_len,
                               const uint8_t* all_rows, int64_t n_seg, float* logits) {
  if (n_seg <= 0) throw std::invalid_argument("forward_batch: no segments");
  int64_t n = 0;
  std::vector<KVCache*> caches(static_cast<size_t>(n_seg));
  for (int64_t s = 0; s < n_seg; ++s) {
    caches[size_t(s)] = &sequence(seg_seq[s]);
    for (int64_t t = 0; t < s; ++t)
      if (seg_seq[t] == seg_seq[s])
        throw std::invalid_argument("sequence " + std::to_string(seg_seq[s]) + " appears twice in a batch");
    if (seg_len[s] <= 0) throw std::invalid_argument("forward_batch: an empty segment");
    n += seg_len[s];
  }
  check_tokens(tokens, n, cfg_.vocab_size);
  for (int64_t s = 0; s < n_seg; ++s) {
    KVCache& cache = *caches[size_t(s)];
    if (cache.length + seg_len[s] > cache.max_positions())
      throw std::invalid_argument("context full for sequence " + std::to_string(seg_seq[s]) + ": " +
                                  std::to_string(cache.length + seg_len[s]) + " positions requested, " +
                                  std::to_string(cache.max_positions()) + " allowed");
  }
  hidden_rows_ = 0;
  s_.slots.resize(size_t(n));
  std::vector<int64_t> out_rows;
  for (int64_t s = 0, i = 0; s < n_seg; ++s) {
    KVCache& cache = *caches[size_t(s)];
    cache.reserve(cache.length + seg_len[s]);
    for (int64_t j = 0; j < seg_len[s]; ++j, ++i) {
      s_.slots[size_t(i)] = {&cache, cache.length + j};
      if ((all_rows != nullptr && all_rows[s]) || j == seg_len[s] - 1) out_rows.push_back(i);
    }
  }
  run(tokens, n, out_rows.data(), int64_t(out_rows.size()), logits);
  for (int64_t s = 0; s < n_seg; ++s) caches[size_t(s)]->length += seg_len[s];
  hidden_rows_ = n;
}

void Model::run(const int32_t* tokens, int64_t n, const int64_t* out_rows, int64_t n_out,
                float* logits) {
  const ModelConfig& c = cfg_;
  const int64_t D = c.hidden_size;
  s_.resize(c, n);
  for (int64_t i = 0; i < n; ++i) w_.tok_embd.row_to_f32(tokens[i], &s_.x[size_t(i * D)]);
  rope_rows(n);
  for (int64_t li = 0; li < c.num_layers; ++li) decoder_block(li, n);
  output_head(w_.out_norm, out_rows, n_out, logits);
}

void Model::rope_rows(int64_t n) {
  const int64_t half = cfg_.rope_dim() / 2;
  for (int64_t i = 0; i < n; ++i)
    rope_angles(s_.slots[size_t(i)].pos, inv_freq_.data(), half, cfg_.rope_attn_factor,
                &s_.cos[size_t(i * half)], &s_.sin[size_t(i * half)]);
}

void Model::decoder_block(int64_t li, int64_t n) {
  const ModelConfig& c = cfg_;
  const int64_t D = c.hidden_size;
  const LayerWeights& l = w_.layers[size_t(li)];
  auto norm_rows = [&](const Tensor& weight) {  // xn = rmsnorm(x) · weight, row by row
    for (int64_t i = 0; i < n; ++i)
      rmsnorm(&s_.x[size_t(i * D)], weight.f32(), D, c.norm_eps, &s_.xn[size_t(i * D)]);
  };
  norm_rows(l.attn_norm);  // x += attention(rmsnorm(x))
  if (c.attention == AttentionKind::Mla) mla_block(li, n); else gqa_block(li, n);
  add_inplace(s_.x.data(), s_.proj.data(), n * D);
  norm_rows(l.ffn_norm);  // x += ffn(rmsnorm(x))
  if (c.is_moe_layer(li)) moe_block(li, n); else swiglu(l.ffn, s_.xn.data(), n, c.intermediate_size, s_.proj.data());
  add_inplace(s_.x.data(), s_.proj.data(), n * D);
}

void Model::output_head(const Tensor& norm, const int64_t* out_rows, int64_t n_out, float* logits) {
  const int64_t D = cfg_.hidden_size;
  for (int64_t j = 0; j < n_out; ++j)  // the rows that want logits, packed at the front of xn
    rmsnorm(&s_.x[size_t(out_rows[j] * D)], norm.f32(), D, cfg_.norm_eps, &s_.xn[size_t(j * D)]);
  if (recording()) record(w_.lm_head, s_.xn.data(), n_out, D, D);
  matmul(pool_, s_.xn.data(), n_out, w_.lm_head, logits);
}

// out = w_down · (silu(w_gate · in) ⊙ (w_up · in))
void Model::swiglu(const FfnWeights& f, const float* in, int64_t n, int64_t width, float* out) {
  const Tensor* ws[] = {&f.w_gate, &f.w_up};
  float* ys[] = {s_.gate.data(), s_.up.data()};
  matmul_many(pool_, in, n, ws, ys, 2);
  silu_mul(s_.gate.data(), s_.up.data(), n * width);
  if (recording()) {
    const int64_t D = cfg_.hidden_size;
    for (const Tensor* w : ws) record(*w, in, n, D, D);
    record(f.w_down, s_.gate.data(), n, width, width);
  }
  matmul(pool_, s_.gate.data(), n, f.w_down, out);
}

}  // namespace r1lite
