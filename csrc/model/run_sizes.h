// Floats per token of each activation buffer the forward pass needs, for the CPU's RunState and
// the CUDA model's buffers alike (0: the model has no such buffer).
#pragma once
#include <cstdint>

#include "model/config.h"

namespace r1lite {

struct RunSizes {
  int64_t hidden = 0;      // x, xn, proj
  int64_t ffn = 0;         // gate, up: the widest SwiGLU
  int64_t q = 0;           // GQA: Hq·hd; MLA: H·(dn + dr)
  int64_t kv = 0;          // GQA k, v: Hkv·hd
  int64_t att = 0;         // attention output before wo: GQA Hq·hd; MLA H·dv
  int64_t rope_half = 0;   // cos, sin
  int64_t q_a = 0;         // MLA q_lora
  int64_t kv_a = 0;        // MLA C + dr
  int64_t q_abs = 0;       // MLA H·(C + dr): absorbed queries
  int64_t latent = 0;      // MLA H·C: attention output in the latent space
  int64_t experts = 0;     // MoE router logits: E
  int64_t chosen = 0;      // MoE expert ids and weights: k

  static RunSizes for_model(const ModelConfig& c) {
    RunSizes s;
    const int64_t H = c.num_heads;
    s.hidden = c.hidden_size;
    s.ffn = c.widest_ffn();
    s.rope_half = c.rope_dim() / 2;
    if (c.attention == AttentionKind::Mla) {
      const int64_t C = c.kv_lora_rank, dr = c.qk_rope_head_dim;
      s.q = H * (c.qk_nope_head_dim + dr);
      s.att = H * c.v_head_dim;
      s.q_a = c.q_lora_rank;
      s.kv_a = C + dr;
      s.q_abs = H * (C + dr);
      s.latent = H * C;
    } else {
      s.q = H * c.head_dim;
      s.kv = c.num_kv_heads * c.head_dim;
      s.att = H * c.head_dim;
    }
    if (c.num_experts > 0) {
      s.experts = c.num_experts;
      s.chosen = c.experts_per_token;
    }
    return s;
  }
};

}  // namespace r1lite
