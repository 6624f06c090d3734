// A loaded model: config, weights (views into memory owned by the caller), KV cache, thread pool,
// and the forward pass.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/config.h"
#include "model/kv_cache.h"

namespace r1lite {

// r1lite's tensor names (the importer maps checkpoint names and layouts onto these):
//   tok_embd [V, D]; out_norm [D]; lm_head [V, D] (absent when tied)
//   layers.{i}.attn_norm [D]; .ffn_norm [D]
//   grouped-query attention: .wq [Hq·hd, D]; .wk, .wv [Hkv·hd, D]; .bq/.bk/.bv (qkv_bias);
//     .wo [D, Hq·hd]
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
// Norms, biases and the router are f32; matrices are f32, bf16, f16, q8_0 or q4_0.
struct FfnWeights {
  Tensor w_gate, w_up, w_down;
};

struct LayerWeights {
  Tensor attn_norm, ffn_norm;
  Tensor wq, wk, wv, bq, bk, bv, wo;                           // GQA (wq, wo also MLA)
  Tensor wq_a, q_a_norm, wq_b, wkv_a, kv_a_norm, w_uk_t, w_uv;  // MLA
  FfnWeights ffn;                                               // dense layers
  Tensor router, router_bias;                                   // MoE layers
  std::vector<FfnWeights> experts;
  FfnWeights shared;
};

struct Weights {
  Tensor tok_embd, out_norm, lm_head;  // lm_head aliases tok_embd when tied
  std::vector<LayerWeights> layers;
};

// Binds r1lite-named tensors to the weight struct (the config validated). Throws
// std::invalid_argument naming a missing tensor or one of the wrong format or shape.
Weights bind_weights(const ModelConfig& config, const std::map<std::string, Tensor>& tensors);

// Throws std::invalid_argument unless 0 < n and every id is in [0, vocab_size).
void check_tokens(const int32_t* tokens, int64_t n, int64_t vocab_size);

// Where one token of a batch goes: its sequence's cache and its position there.
struct TokenSlot {
  KVCache* cache;
  int64_t pos;
};

// Activation buffers for a batch of n tokens.
struct RunState {
  std::vector<TokenSlot> slots;  // [n]
  std::vector<float> x;       // [n, D] residual stream
  std::vector<float> xn;      // [n, D] normed input of a sub-layer
  std::vector<float> q;       // [n, Hq·hd] (MLA: [n, H·qk])
  std::vector<float> k, v;    // [n, Hkv·hd] (GQA)
  std::vector<float> att;     // [n, Hq·hd] attention output before wo (MLA: [n, H·dv])
  std::vector<float> proj;    // [n, D] output of wo / the FFN
  std::vector<float> gate, up;  // [n, widest SwiGLU]
  std::vector<float> cos, sin;  // [n, rope_dim/2] rotary angles of the batch's positions
  // MLA
  std::vector<float> q_a;     // [n, q_lora]
  std::vector<float> kv_a;    // [n, C + dr]
  std::vector<float> q_abs;   // [n, H, C + dr]: absorbed queries (W_UKᵀ·q_nope | rotated q_pe)
  std::vector<float> latent;  // [n, H, C]: attention output in the latent space
  // MoE
  std::vector<float> router_logits;  // [n, E]
  std::vector<int32_t> expert_ids;   // [n, k]
  std::vector<float> expert_weights; // [n, k]
  std::vector<float> routed;         // [n, D] sum of the routed experts' outputs
  std::vector<float> expert_in, expert_out;  // [n, D] one expert's tokens and results
  void resize(const ModelConfig& c, int64_t n);
};

class Model {
 public:
  // Checks every tensor's presence, format and shape; throws std::invalid_argument naming it.
  Model(const ModelConfig& config, const std::map<std::string, Tensor>& tensors, int threads);

  // Feeds n tokens at positions length..length+n-1 of the cache. Writes logits [n, V] if
  // all_logits, else the last position's [V]. Throws std::invalid_argument on a token id outside
  // the vocabulary or past the context (nothing is changed then).
  void forward(const int32_t* tokens, int64_t n, bool all_logits, float* logits);

  // Several sequences, each with its own cache, in one batch (continuous batching): segment s
  // holds seg_len[s] tokens of sequence seg_seq[s] (each sequence at most once), fed after that
  // sequence's cached positions; logits [n_seg, V] are those of each segment's last token. Every
  // weight is read once for the whole batch. Throws std::invalid_argument (changing nothing) on
  // an unknown sequence, a repeated one, a bad token id or a full context.
  void forward_batch(const int32_t* tokens, const int64_t* seg_seq, const int64_t* seg_len,
                     int64_t n_seg, float* logits);
  // Sequence 0 always exists (forward() uses it); others are opened and closed by the caller.
  int64_t open_sequence();
  void close_sequence(int64_t id);
  int64_t sequence_length(int64_t id) { return sequence(id).length; }

  void reset() { caches_[0]->clear(); }
  int64_t n_past() const { return caches_[0]->length; }
  int64_t cache_bytes() const;
  int64_t cache_bytes_per_token() const { return caches_[0]->bytes_per_position(); }
  int threads() const { return pool_.size(); }
  const ModelConfig& config() const { return cfg_; }

 private:
  KVCache& sequence(int64_t id);
  // The layers over n tokens placed by s_.slots (caches reserved), then logits of the rows
  // out_rows[0..n_out) into logits [n_out, V].
  void run(const int32_t* tokens, int64_t n, const int64_t* out_rows, int64_t n_out, float* logits);
  // Each block reads s_.xn (the normed residual) of n tokens and writes s_.proj.
  void gqa_block(int64_t layer, int64_t n);
  void gqa_attention(int64_t layer, int64_t n);
  void mla_block(int64_t layer, int64_t n);
  void mla_attention(int64_t layer, int64_t n);
  void moe_block(int64_t layer, int64_t n);
  // out [n, D] = SwiGLU(f) of in [n, D] with hidden width `width`
  void swiglu(const FfnWeights& f, const float* in, int64_t n, int64_t width, float* out);

  ModelConfig cfg_;
  Weights w_;
  std::vector<float> inv_freq_;
  ThreadPool pool_;
  std::vector<std::unique_ptr<KVCache>> caches_;  // by sequence id; null when closed
  RunState s_;
};

}  // namespace r1lite
