// A loaded model: config, weights (views into memory owned by the caller), KV cache, thread pool,
// and the forward pass.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/config.h"
#include "model/kv_cache.h"

namespace r1lite {

// r1lite's tensor names (the importer maps checkpoint names onto these):
//   tok_embd [V, D]; out_norm [D]; lm_head [V, D] (absent when tied)
//   layers.{i}.attn_norm [D]; .wq [Hq·hd, D]; .wk, .wv [Hkv·hd, D]; .bq/.bk/.bv (qkv_bias);
//   .wo [D, Hq·hd]; .ffn_norm [D]; .w_gate, .w_up [I, D]; .w_down [D, I]
// Norms and biases are f32; matrices are f32, bf16 or f16.
struct LayerWeights {
  Tensor attn_norm, wq, wk, wv, bq, bk, bv, wo;
  Tensor ffn_norm, w_gate, w_up, w_down;
};

struct Weights {
  Tensor tok_embd, out_norm, lm_head;  // lm_head aliases tok_embd when tied
  std::vector<LayerWeights> layers;
};

// Activation buffers for a batch of n tokens.
struct RunState {
  std::vector<float> x;       // [n, D] residual stream
  std::vector<float> xn;      // [n, D] normed input of a sub-layer
  std::vector<float> q;       // [n, Hq·hd]
  std::vector<float> k, v;    // [n, Hkv·hd]
  std::vector<float> att;     // [n, Hq·hd] attention output before wo
  std::vector<float> proj;    // [n, D] output of wo / w_down
  std::vector<float> gate, up;  // [n, I]
  std::vector<float> cos, sin;  // [n, hd/2] rotary angles of the batch's positions
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

  void reset() { cache_.clear(); }
  int64_t n_past() const { return cache_.length; }
  int64_t cache_bytes() const { return cache_.bytes_allocated(); }
  int threads() const { return pool_.size(); }
  const ModelConfig& config() const { return cfg_; }

 private:
  void attention(int64_t layer, int64_t n, int64_t pos0);

  ModelConfig cfg_;
  Weights w_;
  std::vector<float> inv_freq_;
  ThreadPool pool_;
  KVCache cache_;
  RunState s_;
};

}  // namespace r1lite
