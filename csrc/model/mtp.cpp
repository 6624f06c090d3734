// DeepSeek-V3/R1's multi-token-prediction (MTP) module, for speculative decoding (ARCH.md §12;
// DeepSeek-V3 technical report §2.2; the checkpoint layout in DeepSeek-V3's
// README_WEIGHTS.md). DeepSeek's own inference code has no MTP forward; this follows the report
// and the serving engines that run these weights (vLLM deepseek_mtp.py, SGLang deepseek_nextn.py).
// For position j, given the main model's hidden state h_j and the next token t_{j+1}:
//   x = eh_proj · [enorm(embed(t_{j+1})) ; hnorm(h_j)]      (the embedding half first)
//   x = decoder block (pre-norm attention + FFN with residuals, its own cache layer, position j)
//   logits = lm_head · head_norm(x)                          predicting t_{j+2}
// h_j is the state the main output head reads (after the final norm), as the engines hand it over.
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "model/model.h"

namespace r1lite {

void Model::last_hidden(float* out) {
  const int64_t D = cfg_.hidden_size;
  if (hidden_rows_ == 0) throw std::invalid_argument("last_hidden: no forward() since the last other call");
  for (int64_t i = 0; i < hidden_rows_; ++i)
    rmsnorm(&s_.x[size_t(i * D)], w_.out_norm.f32(), D, cfg_.norm_eps, &out[i * D]);
}

void Model::forward_mtp(int64_t id, const int32_t* tokens, const float* hidden, int64_t n, float* logits) {
  const ModelConfig& c = cfg_;
  if (c.mtp_layers == 0) throw std::invalid_argument("this model has no MTP module (mtp_layers = 0)");
  check_tokens(tokens, n, c.vocab_size);
  KVCache& cache = sequence(id);
  const int64_t pos0 = cache.mtp_length, D = c.hidden_size;
  if (pos0 + n > cache.length)
    throw std::invalid_argument("forward_mtp: positions " + std::to_string(pos0) + ".." +
                                std::to_string(pos0 + n - 1) + " are not all fed to the model yet (it holds " +
                                std::to_string(cache.length) + ")");
  hidden_rows_ = 0;
  s_.resize(c, n);
  s_.slots.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) s_.slots[size_t(i)] = {&cache, pos0 + i};
  rope_rows(n);

  const MtpWeights& m = w_.mtp[0];
  std::vector<float> eh(static_cast<size_t>(n * 2 * D)), emb(static_cast<size_t>(D));
  for (int64_t i = 0; i < n; ++i) {
    float* row = &eh[size_t(i * 2 * D)];
    w_.tok_embd.row_to_f32(tokens[i], emb.data());
    rmsnorm(emb.data(), m.enorm.f32(), D, c.norm_eps, row);
    rmsnorm(hidden + i * D, m.hnorm.f32(), D, c.norm_eps, row + D);
  }
  matmul(pool_, eh.data(), n, m.eh_proj, s_.x.data());
  decoder_block(c.num_layers, n);  // the module's block: layer and cache layer num_layers + 0
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[size_t(i)] = i;
  output_head(m.head_norm, rows.data(), n, logits);
  cache.mtp_length = pos0 + n;
}

}  // namespace r1lite
