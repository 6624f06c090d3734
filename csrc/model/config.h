// The one configuration every architecture is described by. The Python importer fills it from a
// checkpoint's config (Hugging Face keys never reach the core).
#pragma once
#include <cstdint>
#include <vector>

namespace r1lite {

enum class RopeKind : int { Default = 0, Llama3 = 1, Yarn = 2 };

// Attention: grouped-query (Qwen2, Llama) or DeepSeek's multi-head latent attention (ARCH.md §4).
enum class AttentionKind : int { Gqa = 0, Mla = 1 };

// How a mixture-of-experts layer picks its experts (ARCH.md §6, §10).
enum class RouterKind : int {
  SigmoidGroupTop2 = 0,   // V3/R1 "noaux_tc": sigmoid, bias for selection, groups by top-2 sum
  SoftmaxGreedy = 1,      // V2 "greedy": softmax, top-k over all experts
  SoftmaxGroupMax = 2,    // V2 "group_limited_greedy": softmax, groups by their best expert
};

// MLA's q_a_layernorm and kv_a_layernorm keep RMSNorm's default epsilon in both transformers and
// DeepSeek's code, whatever rms_norm_eps says.
constexpr float kLatentNormEps = 1e-6f;

struct ModelConfig {
  int64_t vocab_size = 0;         // rows of the embedding and of lm_head
  int64_t hidden_size = 0;        // model dim D
  int64_t num_layers = 0;
  int64_t num_heads = 0;          // query heads Hq
  int64_t num_kv_heads = 0;       // key/value heads Hkv (Hq % Hkv == 0)
  int64_t head_dim = 0;           // per head (GQA; unused by MLA)
  int64_t intermediate_size = 0;  // SwiGLU hidden width of dense layers
  float norm_eps = 1e-6f;
  bool qkv_bias = false;          // q/k/v projections carry biases (Qwen2)
  bool tied_embeddings = false;   // lm_head is the embedding matrix
  int64_t context = 0;            // most positions the KV cache may hold

  // RoPE (ARCH.md §7-8)
  RopeKind rope_kind = RopeKind::Default;
  float rope_theta = 10000.f;
  float rope_factor = 1.f;             // llama3, yarn: divides the low frequencies
  float rope_low_freq_factor = 1.f;    // llama3
  float rope_high_freq_factor = 4.f;   // llama3
  int64_t rope_original_context = 0;   // llama3, yarn: original_max_position_embeddings
  // Per-frequency divisors of the inverse frequencies (GGUF's rope_freqs tensor: llama.cpp's
  // converter writes llama3 scaling this way); empty: none. Applied after rope_kind's own.
  std::vector<float> rope_freq_factors;

  // YaRN (ARCH.md §5)
  float yarn_beta_fast = 32.f;
  float yarn_beta_slow = 1.f;
  float yarn_attn_factor = 1.f;        // multiplies cos and sin
  float attn_scale_mult = 1.f;         // multiplies the softmax scale (MLA's mscale², §4)

  // MLA (AttentionKind::Mla; ARCH.md §4). The importer lays the rope channels out in
  // rotate-half order, so one rope kernel serves every architecture.
  AttentionKind attention = AttentionKind::Gqa;
  int64_t q_lora_rank = 0;     // 0: one q projection; else q_a -> norm -> q_b
  int64_t kv_lora_rank = 0;    // C: the cached latent
  int64_t mla_nope_dim = 0;    // dn: per-head query/key channels without rope
  int64_t mla_rope_dim = 0;    // dr: rope channels (one shared rope key)
  int64_t mla_v_dim = 0;       // dv: per-head value channels

  // Mixture of experts (ARCH.md §6): layers >= moe_first_layer when num_experts > 0.
  int64_t num_experts = 0;          // routed experts
  int64_t num_shared_experts = 0;   // folded into one SwiGLU of width moe_intermediate·shared
  int64_t experts_per_token = 0;    // top-k
  int64_t moe_intermediate = 0;     // one routed expert's SwiGLU width
  int64_t moe_first_layer = 0;      // first_k_dense_replace
  int64_t expert_groups = 1;        // n_group
  int64_t expert_groups_kept = 1;   // topk_group
  RouterKind router = RouterKind::SigmoidGroupTop2;
  bool router_bias = false;         // a per-expert selection bias (V3 e_score_correction_bias)
  bool normalize_expert_weights = false;
  float routed_scale = 1.f;

  bool is_moe_layer(int64_t layer) const { return num_experts > 0 && layer >= moe_first_layer; }
  // Values per token per layer the attention cache holds.
  int64_t cache_values_per_token() const;

  // Throws std::invalid_argument naming the first bad field.
  void validate() const;
  // Channels the rotary embedding turns in each head: head_dim, or MLA's rope channels.
  int64_t rope_dim() const { return attention == AttentionKind::Mla ? mla_rope_dim : head_dim; }
  // rope_dim/2 inverse frequencies, in f32 as transformers computes them.
  std::vector<float> rope_inv_freq() const;
};

}  // namespace r1lite
