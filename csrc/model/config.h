// The one description of a model's shape that every architecture, the importers (Python) and
// both backends use. Its fields are listed once, in R1LITE_CONFIG_FIELDS: the struct below is
// generated from that table, and so are the Python binding's reading and writing of a config
// (bindings.cpp) and the schema Python sees (_core.config_fields()). The Python importers fill it
// from a checkpoint's config; checkpoint names never reach the core.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace r1lite {

enum class RopeKind : int { Default = 0, Llama3 = 1, Yarn = 2 };

// Attention: grouped-query (Qwen2, Qwen3, Llama) or DeepSeek's multi-head latent attention
// (ARCH.md §4).
enum class AttentionKind : int { Gqa = 0, Mla = 1 };

// How a mixture-of-experts layer picks its experts (ARCH.md §6, §10).
enum class RouterKind : int {
  SigmoidGroupTop2 = 0,   // V3/R1 "noaux_tc": sigmoid, bias for selection, groups by top-2 sum
  SoftmaxGreedy = 1,      // V2 "greedy": softmax, top-k over all experts
  SoftmaxGroupMax = 2,    // V2 "group_limited_greedy": softmax, groups by their best expert
};

// The names an enum field has in a config (index = the enum's value).
inline const std::vector<std::string>& enum_names(RopeKind) {
  static const std::vector<std::string> n{"default", "llama3", "yarn"};
  return n;
}
inline const std::vector<std::string>& enum_names(AttentionKind) {
  static const std::vector<std::string> n{"gqa", "mla"};
  return n;
}
inline const std::vector<std::string>& enum_names(RouterKind) {
  static const std::vector<std::string> n{"sigmoid_group_top2", "softmax_greedy", "softmax_group_max"};
  return n;
}

inline const std::vector<std::string>& enum_names(DType) {
  static const std::vector<std::string> n{"f32", "bf16", "f16", "q8_0", "q4_0"};  // DType order
  return n;
}

// MLA's q_a_layernorm and kv_a_layernorm keep RMSNorm's default epsilon in both transformers and
// DeepSeek's code, whatever rms_norm_eps says.
constexpr float kLatentNormEps = 1e-6f;

// Sanity bounds far above any real model (R1: 61 layers, 256 experts): a config beyond them is
// corrupt, and listing its tensors would not end.
constexpr int64_t kMaxLayers = 4096, kMaxExperts = 65536;

using FloatList = std::vector<float>;

// X(name, type, default, meaning) for every field, grouped by the part of the model it describes.
#define R1LITE_CONFIG_FIELDS(X)                                                                     \
  X(architecture, std::string, "", "r1lite's name of the architecture (qwen2, qwen3, llama, deepseek_v2, deepseek_v3)") \
  X(vocab_size, int64_t, 0, "rows of the embedding and of lm_head")                                \
  X(hidden_size, int64_t, 0, "model dimension D")                                                  \
  X(num_layers, int64_t, 0, "transformer layers")                                                   \
  X(num_heads, int64_t, 0, "query heads")                                                           \
  X(num_kv_heads, int64_t, 0, "key/value heads (grouped-query; MLA: num_heads)")                    \
  X(head_dim, int64_t, 0, "query/key channels per head (MLA: qk_nope_head_dim + qk_rope_head_dim)") \
  X(intermediate_size, int64_t, 0, "SwiGLU hidden width of the dense layers (0: none)")           \
  X(norm_eps, float, 1e-6f, "RMSNorm epsilon")                                                      \
  X(qkv_bias, bool, false, "the q/k/v projections carry biases (Qwen2)")                           \
  X(qk_norm, bool, false, "per-head RMSNorm of queries and keys before rotary (Qwen3, ARCH.md §11)") \
  X(tied_embeddings, bool, false, "lm_head is the embedding matrix")                               \
  X(max_position_embeddings, int64_t, 0, "the context the model was trained for")                  \
  X(context, int64_t, 0, "most positions the KV cache may hold")                                   \
  X(kv_cache, DType, DType::F32, "storage format of the KV cache: f32, f16, bf16 or q8_0")         \
  /* rotary embedding (ARCH.md §5, §7-8) */                                                         \
  X(rope_kind, RopeKind, RopeKind::Default, "default, llama3 or yarn")                             \
  X(rope_theta, float, 10000.f, "base of the rotary frequencies")                                  \
  X(rope_factor, float, 1.f, "llama3, yarn: divides the low frequencies")                         \
  X(rope_low_freq_factor, float, 1.f, "llama3")                                                    \
  X(rope_high_freq_factor, float, 4.f, "llama3")                                                   \
  X(rope_original_context, int64_t, 0, "llama3, yarn: the context before scaling")                 \
  X(rope_freq_factors, FloatList, {}, "per-frequency divisors applied after rope_kind's (GGUF rope_freqs); empty: none") \
  X(yarn_beta_fast, float, 32.f, "yarn: ramp end, in rotations")                                   \
  X(yarn_beta_slow, float, 1.f, "yarn: ramp start, in rotations")                                  \
  X(rope_attn_factor, float, 1.f, "multiplies rotary cos and sin (yarn's attention factor)")       \
  X(attn_scale_mult, float, 1.f, "multiplies the softmax scale (MLA's mscale², ARCH.md §4)")       \
  /* attention kind; MLA's shapes (ARCH.md §4) */                                                   \
  X(attention, AttentionKind, AttentionKind::Gqa, "gqa or mla")                                    \
  X(q_lora_rank, int64_t, 0, "MLA: 0 for one q projection, else q_a -> norm -> q_b")              \
  X(kv_lora_rank, int64_t, 0, "MLA: C, the cached latent's width")                                \
  X(qk_nope_head_dim, int64_t, 0, "MLA: per-head query/key channels without rotary")             \
  X(qk_rope_head_dim, int64_t, 0, "MLA: rotary channels (one rope key shared by all heads)")      \
  X(v_head_dim, int64_t, 0, "MLA: per-head value channels")                                       \
  X(rope_interleaved, bool, false, "MLA import fact: the checkpoint stored rope channels as interleaved pairs (the importer reorders them)") \
  /* mixture of experts (ARCH.md §6, §10): layers >= moe_first_layer when num_experts > 0 */         \
  X(num_experts, int64_t, 0, "routed experts (0: dense model)")                                    \
  X(num_shared_experts, int64_t, 0, "shared experts, folded into one SwiGLU of moe_intermediate_size·shared") \
  X(experts_per_token, int64_t, 0, "routed experts each token uses (top-k)")                       \
  X(moe_intermediate_size, int64_t, 0, "one routed expert's SwiGLU width")                         \
  X(moe_first_layer, int64_t, 0, "the first layer with experts (earlier ones are dense)")         \
  X(expert_groups, int64_t, 1, "groups the experts are split into for selection")                  \
  X(expert_groups_kept, int64_t, 1, "groups a token may pick experts from")                        \
  X(router, RouterKind, RouterKind::SigmoidGroupTop2, "sigmoid_group_top2, softmax_greedy or softmax_group_max") \
  X(router_bias, bool, false, "a per-expert selection bias (not in the weights)")                  \
  X(normalize_expert_weights, bool, false, "the chosen experts' weights sum to 1")                 \
  X(routed_scale, float, 1.f, "multiplies the routed experts' weights")                            \
  /* DeepSeek's multi-token prediction (ARCH.md §12): speculative decoding only */      \
  X(mtp_layers, int64_t, 0, "MTP modules kept: each one more decoder block (cache layer num_layers + d) with its own input projection")

struct ModelConfig {
#define R1LITE_DECLARE_FIELD(name, type, fallback, meaning) type name = fallback;
  R1LITE_CONFIG_FIELDS(R1LITE_DECLARE_FIELD)
#undef R1LITE_DECLARE_FIELD

  bool is_moe_layer(int64_t layer) const { return num_experts > 0 && layer >= moe_first_layer; }
  // Throws std::invalid_argument naming the first bad field.
  void validate() const;
  // Channels the rotary embedding turns in each head: head_dim, or MLA's rope channels.
  int64_t rope_dim() const { return attention == AttentionKind::Mla ? qk_rope_head_dim : head_dim; }
  // rope_dim/2 inverse frequencies, in f32 as transformers computes them.
  std::vector<float> rope_inv_freq() const;
  // The widest SwiGLU hidden layer of any FFN (dense, one expert, or the shared experts).
  int64_t widest_ffn() const;
};

}  // namespace r1lite
