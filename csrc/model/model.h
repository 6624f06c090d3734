// The CPU model: config, weights (views into memory owned by the caller), KV caches, thread pool,
// and the forward pass (forward.cpp: the layer loop; attention.cpp, mla.cpp, moe.cpp: its blocks;
// mtp.cpp: DeepSeek's multi-token-prediction module).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "model/attend.h"
#include "model/backend.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/weights.h"

namespace r1lite {

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
  std::vector<float> chosen_gate, chosen_up, chosen_out;  // one token's k experts: [k, F], [k, F], [k, D]
  // Attention's tasks and the split tokens' partial results (attend.h)
  SplitPlan attention_plan;
  std::vector<int64_t> query_blocks;  // gqa_attention_blocks: each block's first token, then n
  std::vector<float> split_sums, split_ml;
  void resize(const ModelConfig& c, int64_t n);
};

class Model final : public Backend {
 public:
  // Checks every tensor's presence, format and shape; throws std::invalid_argument naming it.
  Model(const ModelConfig& config, const std::map<std::string, Tensor>& tensors, int threads);

  void forward(const int32_t* tokens, int64_t n, bool all_logits, float* logits) override;
  void forward_batch(const int32_t* tokens, const int64_t* seg_seq, const int64_t* seg_len,
                     int64_t n_seg, float* logits) override;
  void forward_batch_rows(const int32_t* tokens, const int64_t* seg_seq, const int64_t* seg_len,
                          const uint8_t* all_rows, int64_t n_seg, float* logits) override;
  int64_t open_sequence() override;
  void close_sequence(int64_t id) override;
  int64_t sequence_length(int64_t id) override { return sequence(id).length; }
  void truncate_sequence(int64_t id, int64_t n) override;
  int64_t fork_sequence(int64_t id, int64_t n) override;
  int64_t hidden_rows() const override { return hidden_rows_; }
  void last_hidden(float* out) override;
  void forward_mtp(int64_t id, const int32_t* tokens, const float* hidden, int64_t n, float* logits) override;
  int64_t mtp_length(int64_t id) override { return sequence(id).mtp_length; }

  void record_activations(bool on) override;
  std::map<std::string, ActivationStat> activation_stats() const override;

  void reset() override { caches_[0]->clear(); }
  int64_t n_past() const override { return caches_[0]->length; }
  int64_t cache_bytes() const override;
  int64_t cache_bytes_per_token() const override { return caches_[0]->bytes_per_position(); }
  int threads() const override { return pool_.size(); }
  const ModelConfig& config() const override { return cfg_; }

 private:
  KVCache& sequence(int64_t id);
  std::unique_ptr<KVCache> make_cache() const;
  // The layers over n tokens placed by s_.slots (caches reserved), then logits of the rows
  // out_rows[0..n_out) into logits [n_out, V].
  void run(const int32_t* tokens, int64_t n, const int64_t* out_rows, int64_t n_out, float* logits);
  // The pieces of run(): rotary angles of the slots' positions; one decoder block over s_.x
  // (layer li's weights and cache layer); logits of rows out_rows of s_.x through norm and lm_head.
  void rope_rows(int64_t n);
  void decoder_block(int64_t li, int64_t n);
  void output_head(const Tensor& norm, const int64_t* out_rows, int64_t n_out, float* logits);
  // Each block reads s_.xn (the normed residual) of n tokens and writes s_.proj.
  void gqa_block(int64_t layer, int64_t n);
  void gqa_attention(int64_t layer, int64_t n);
  void gqa_attention_blocks(int64_t layer, int64_t n);
  void mla_block(int64_t layer, int64_t n);
  void mla_attention(int64_t layer, int64_t n);
  // Positions each token of the batch attends to (its position + 1).
  std::vector<int64_t> token_lengths(int64_t n) const;
  // Combines the position ranges of split tokens (attention.cpp).
  void merge_split_attention(int64_t n, int64_t block, int64_t heads, int64_t dim, int64_t token_stride, float* out);
  void moe_block(int64_t layer, int64_t n);
  void moe_one_token(const LayerWeights& l);
  // out [n, D] = SwiGLU(f) of in [n, D] with hidden width `width`
  void swiglu(const FfnWeights& f, const float* in, int64_t n, int64_t width, float* out);

  // While recording: adds the squares of x [n, cols] (rows ldx apart) into w's stat, group
  // `group` of `groups`; `rows` is how many input rows that counts as (per group).
  void record(const Tensor& w, const float* x, int64_t n, int64_t ldx, int64_t cols,
              int64_t group = 0, int64_t groups = 1);
  bool recording() const { return !weight_names_.empty(); }

  ModelConfig cfg_;
  Weights w_;
  std::map<const Tensor*, std::string> weight_names_;  // filled while recording
  std::map<std::string, ActivationStat> stats_;
  std::vector<float> inv_freq_;
  ThreadPool pool_;
  std::vector<std::unique_ptr<KVCache>> caches_;  // by sequence id; null when closed
  RunState s_;
  int64_t hidden_rows_ = 0;  // rows of s_.x left by the last forward()/forward_batch() (see last_hidden)
};

}  // namespace r1lite
