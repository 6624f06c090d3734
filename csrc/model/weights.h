// A model's weights in r1lite's own names, and the one list of them: for_each_weight() visits
// every tensor a config calls for (name, shape, kind) and is used to bind the tensors given by
// Python (bind_weights), to tell Python what to provide (tensor_specs, exported as
// _core.tensor_specs) and to upload them to a GPU (cuda/device_model.cu).
//
// Names (the importers map checkpoint names and layouts onto these):
//   tok_embd [V, D]; out_norm [D]; lm_head [V, D] (absent when tied)
//   layers.{i}.attn_norm [D]; .ffn_norm [D]
//   grouped-query attention: .wq [Hq·hd, D]; .wk, .wv [Hkv·hd, D]; .bq/.bk/.bv (qkv_bias);
//     .q_norm, .k_norm [hd] (qk_norm); .wo [D, Hq·hd]
//   MLA (ARCH.md §4; dn, dr, dv, C as in ModelConfig, qk = dn + dr, rope channels of every q head
//   and of the shared rope key in rotate-half order):
//     .wq [H·qk, D] when q_lora_rank == 0, else .wq_a [q_lora, D], .q_a_norm [q_lora], .wq_b [H·qk, q_lora];
//     .wkv_a [C + dr, D]; .kv_a_norm [C];
//     .w_uk_t [H·C, dn]: per head the transpose of the key half of kv_b (absorbed into the query);
//     .w_uv [H·dv, C]: per head the value half of kv_b; .wo [D, H·dv]
//   dense FFN: .w_gate, .w_up [I, D]; .w_down [D, I]
//   MoE FFN: .router [E, D] (f32); .router_bias [E] (f32, when router_bias);
//     .experts.{e}.w_gate/.w_up [Im, D], .w_down [D, Im];
//     .shared.w_gate/.w_up [Im·S, D], .shared.w_down [D, Im·S] (when S shared experts > 0)
//   DeepSeek's MTP module d < mtp_layers (ARCH.md §12): mtp.{d}.enorm, .hnorm [D]; .eh_proj [D, 2·D]
//     (input columns: the embedding half, then the hidden half); one decoder block under the same
//     names as a layer (mtp.{d}.attn_norm, .wq_a, ..., .experts.{e}.w_gate, ...), held as
//     layers[num_layers + d] and dense or MoE as layer num_layers + d would be; .head_norm [D].
//     Its embedding and output head are tok_embd and lm_head.
// Norms, biases and the router are f32 (WeightKind::F32); matrices (WeightKind::Matrix) are f32,
// bf16, f16, q8_0 or q4_0.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace r1lite {

enum class WeightKind : int { Matrix = 0, F32 = 1 };

struct FfnWeights {
  Tensor w_gate, w_up, w_down;
};

struct LayerWeights {
  Tensor attn_norm, ffn_norm;
  Tensor wq, wk, wv, bq, bk, bv, q_norm, k_norm, wo;            // GQA (wq, wo also MLA)
  Tensor wq_a, q_a_norm, wq_b, wkv_a, kv_a_norm, w_uk_t, w_uv;  // MLA
  FfnWeights ffn;                                               // dense layers
  Tensor router, router_bias;                                   // MoE layers
  std::vector<FfnWeights> experts;
  FfnWeights shared;
};

// An MTP module's own tensors; its decoder block is Weights::layers[num_layers + d].
struct MtpWeights {
  Tensor enorm, hnorm, eh_proj, head_norm;
};

struct Weights {
  Tensor tok_embd, out_norm, lm_head;  // lm_head aliases tok_embd when tied
  std::vector<LayerWeights> layers;    // num_layers, then the MTP modules' blocks
  std::vector<MtpWeights> mtp;         // mtp_layers
};

// Calls fn(name, slot, shape, kind) for every tensor the config calls for, in a fixed order;
// `slot` is where that tensor lives in `w` (sized to the config first). A tied lm_head is not
// visited (it is tok_embd).
template <class Fn>
void for_each_weight(const ModelConfig& c, Weights& w, Fn&& fn) {
  using S = std::vector<int64_t>;
  constexpr WeightKind M = WeightKind::Matrix, F = WeightKind::F32;
  const int64_t D = c.hidden_size, V = c.vocab_size, H = c.num_heads;
  auto ffn = [&](const std::string& p, FfnWeights& f, int64_t width) {
    fn(p + "w_gate", f.w_gate, S{width, D}, M);
    fn(p + "w_up", f.w_up, S{width, D}, M);
    fn(p + "w_down", f.w_down, S{D, width}, M);
  };
  fn("tok_embd", w.tok_embd, S{V, D}, M);
  fn("out_norm", w.out_norm, S{D}, F);
  if (!c.tied_embeddings) fn("lm_head", w.lm_head, S{V, D}, M);
  // one decoder block: attention and FFN, the tensors named p + ...
  auto layer = [&](const std::string& p, LayerWeights& l, int64_t i) {
    fn(p + "attn_norm", l.attn_norm, S{D}, F);
    if (c.attention == AttentionKind::Mla) {
      const int64_t C = c.kv_lora_rank, dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim;
      const int64_t dv = c.v_head_dim, ql = c.q_lora_rank;
      if (ql == 0) {
        fn(p + "wq", l.wq, S{H * (dn + dr), D}, M);
      } else {
        fn(p + "wq_a", l.wq_a, S{ql, D}, M);
        fn(p + "q_a_norm", l.q_a_norm, S{ql}, F);
        fn(p + "wq_b", l.wq_b, S{H * (dn + dr), ql}, M);
      }
      fn(p + "wkv_a", l.wkv_a, S{C + dr, D}, M);
      fn(p + "kv_a_norm", l.kv_a_norm, S{C}, F);
      fn(p + "w_uk_t", l.w_uk_t, S{H * C, dn}, M);
      fn(p + "w_uv", l.w_uv, S{H * dv, C}, M);
      fn(p + "wo", l.wo, S{D, H * dv}, M);
    } else {
      const int64_t hd = c.head_dim, q_dim = H * hd, kv_dim = c.num_kv_heads * hd;
      fn(p + "wq", l.wq, S{q_dim, D}, M);
      fn(p + "wk", l.wk, S{kv_dim, D}, M);
      fn(p + "wv", l.wv, S{kv_dim, D}, M);
      if (c.qkv_bias) {
        fn(p + "bq", l.bq, S{q_dim}, F);
        fn(p + "bk", l.bk, S{kv_dim}, F);
        fn(p + "bv", l.bv, S{kv_dim}, F);
      }
      if (c.qk_norm) {
        fn(p + "q_norm", l.q_norm, S{hd}, F);
        fn(p + "k_norm", l.k_norm, S{hd}, F);
      }
      fn(p + "wo", l.wo, S{D, q_dim}, M);
    }
    fn(p + "ffn_norm", l.ffn_norm, S{D}, F);
    if (c.is_moe_layer(i)) {
      const int64_t E = c.num_experts, Im = c.moe_intermediate_size;
      fn(p + "router", l.router, S{E, D}, F);
      if (c.router_bias) fn(p + "router_bias", l.router_bias, S{E}, F);
      l.experts.resize(size_t(E));
      for (int64_t e = 0; e < E; ++e)
        ffn(p + "experts." + std::to_string(e) + ".", l.experts[size_t(e)], Im);
      if (c.num_shared_experts > 0) ffn(p + "shared.", l.shared, Im * c.num_shared_experts);
    } else {
      ffn(p, l.ffn, c.intermediate_size);
    }
  };
  w.layers.resize(size_t(c.num_layers + c.mtp_layers));
  for (int64_t i = 0; i < c.num_layers; ++i) layer("layers." + std::to_string(i) + ".", w.layers[size_t(i)], i);
  w.mtp.resize(size_t(c.mtp_layers));
  for (int64_t d = 0; d < c.mtp_layers; ++d) {
    const std::string p = "mtp." + std::to_string(d) + ".";
    MtpWeights& m = w.mtp[size_t(d)];
    fn(p + "enorm", m.enorm, S{D}, F);
    fn(p + "hnorm", m.hnorm, S{D}, F);
    fn(p + "eh_proj", m.eh_proj, S{D, 2 * D}, M);
    layer(p, w.layers[size_t(c.num_layers + d)], c.num_layers + d);
    fn(p + "head_norm", m.head_norm, S{D}, F);
  }
}

// Binds r1lite-named tensors to the weight struct (the config validated). Throws
// std::invalid_argument naming a missing tensor or one of the wrong format or shape.
Weights bind_weights(const ModelConfig& config, const std::map<std::string, Tensor>& tensors);

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  WeightKind kind;
};
// Every tensor a (validated) config calls for, in for_each_weight's order.
std::vector<TensorSpec> tensor_specs(const ModelConfig& config);

}  // namespace r1lite
