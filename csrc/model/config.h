// The one configuration every architecture is described by. The Python importer fills it from a
// checkpoint's config (Hugging Face keys never reach the core).
#pragma once
#include <cstdint>
#include <vector>

namespace r1lite {

enum class RopeKind : int { Default = 0, Llama3 = 1 };

struct ModelConfig {
  int64_t vocab_size = 0;         // rows of the embedding and of lm_head
  int64_t hidden_size = 0;        // model dim D
  int64_t num_layers = 0;
  int64_t num_heads = 0;          // query heads Hq
  int64_t num_kv_heads = 0;       // key/value heads Hkv (Hq % Hkv == 0)
  int64_t head_dim = 0;           // per head
  int64_t intermediate_size = 0;  // SwiGLU hidden width
  float norm_eps = 1e-6f;
  bool qkv_bias = false;          // q/k/v projections carry biases (Qwen2)
  bool tied_embeddings = false;   // lm_head is the embedding matrix
  int64_t context = 0;            // most positions the KV cache may hold

  // RoPE (ARCH.md §7-8)
  RopeKind rope_kind = RopeKind::Default;
  float rope_theta = 10000.f;
  float rope_factor = 1.f;             // llama3: divides the low frequencies
  float rope_low_freq_factor = 1.f;    // llama3
  float rope_high_freq_factor = 4.f;   // llama3
  int64_t rope_original_context = 0;   // llama3: original_max_position_embeddings

  // Throws std::invalid_argument naming the first bad field.
  void validate() const;
  // head_dim/2 inverse frequencies, in f32 as transformers computes them.
  std::vector<float> rope_inv_freq() const;
};

}  // namespace r1lite
