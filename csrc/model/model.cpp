// Binding r1lite-named tensors to the model's weight struct, with shape and format checks.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "model/model.h"

namespace r1lite {

namespace {

class Binder {
 public:
  explicit Binder(const std::map<std::string, Tensor>& tensors) : tensors_(tensors) {}

  // A matrix or vector of an exact shape; `f32_only` for norms and biases.
  Tensor get(const std::string& name, std::vector<int64_t> shape, bool f32_only) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw std::invalid_argument("missing tensor '" + name + "'");
    Tensor t = it->second;
    if (f32_only && t.dtype != DType::F32)
      throw std::invalid_argument("tensor '" + name + "' must be f32, got " + dtype_name(t.dtype));
    if (!t.data) throw std::invalid_argument("tensor '" + name + "' has no data");
    if (is_quantized(t.dtype)) {
      // The planes' shapes as bound (bindings.cpp) are [rows, row bytes] and [rows, blocks].
      const int64_t blocks = (shape[1] + kQuantBlock - 1) / kQuantBlock;
      const std::vector<int64_t> want_q{shape[0], row_bytes(t.dtype, shape[1])};
      const std::vector<int64_t> want_s{shape[0], blocks};
      if (shape.size() != 2 || t.shape != want_q || t.scale_shape != want_s)
        throw std::invalid_argument("tensor '" + name + "' (" + dtype_name(t.dtype) + ") has planes " +
                                    shape_str(t.shape) + " and scales " + shape_str(t.scale_shape) +
                                    ", expected " + shape_str(want_q) + " and " + shape_str(want_s) +
                                    " for shape " + shape_str(shape));
      t.shape = shape;  // logical from here on
      return t;
    }
    if (t.shape != shape)
      throw std::invalid_argument("tensor '" + name + "' has shape " + shape_str(t.shape) +
                                  ", expected " + shape_str(shape));
    return t;
  }

 private:
  const std::map<std::string, Tensor>& tensors_;
};

}  // namespace

namespace {

std::unique_ptr<KVCache> make_cache(const ModelConfig& c) {
  if (c.attention == AttentionKind::Mla)  // one row per position: latent | rope key (ARCH.md §4)
    return std::make_unique<KVCache>(c.num_layers, 1, c.kv_lora_rank + c.mla_rope_dim, 0, c.context);
  return std::make_unique<KVCache>(c.num_layers, c.num_kv_heads, c.head_dim, c.head_dim, c.context);
}

FfnWeights bind_ffn(const Binder& b, const std::string& p, int64_t d, int64_t width) {
  return {b.get(p + "w_gate", {width, d}, false), b.get(p + "w_up", {width, d}, false),
          b.get(p + "w_down", {d, width}, false)};
}

}  // namespace

void RunState::resize(const ModelConfig& c, int64_t n) {
  const int64_t D = c.hidden_size, H = c.num_heads;
  auto fit = [n](auto& v, int64_t per_token) { v.resize(size_t(n * per_token)); };
  int64_t widest = c.intermediate_size;
  if (c.num_experts > 0)
    widest = std::max({widest, c.moe_intermediate, c.moe_intermediate * c.num_shared_experts});
  fit(x, D);
  fit(xn, D);
  fit(proj, D);
  fit(gate, widest);
  fit(up, widest);
  fit(cos, c.rope_dim() / 2);
  fit(sin, c.rope_dim() / 2);
  if (c.attention == AttentionKind::Mla) {
    const int64_t C = c.kv_lora_rank, dr = c.mla_rope_dim;
    fit(q, H * (c.mla_nope_dim + dr));
    fit(att, H * c.mla_v_dim);
    fit(q_a, c.q_lora_rank);
    fit(kv_a, C + dr);
    fit(q_abs, H * (C + dr));
    fit(latent, H * C);
  } else {
    fit(q, H * c.head_dim);
    fit(k, c.num_kv_heads * c.head_dim);
    fit(v, c.num_kv_heads * c.head_dim);
    fit(att, H * c.head_dim);
  }
  if (c.num_experts > 0) {
    fit(router_logits, c.num_experts);
    fit(expert_ids, c.experts_per_token);
    fit(expert_weights, c.experts_per_token);
    fit(routed, D);
    fit(expert_in, D);
    fit(expert_out, D);
  }
}

Weights bind_weights(const ModelConfig& cfg, const std::map<std::string, Tensor>& tensors) {
  const Binder b(tensors);
  const int64_t D = cfg.hidden_size, V = cfg.vocab_size, H = cfg.num_heads;
  Weights w;
  w.tok_embd = b.get("tok_embd", {V, D}, false);
  w.out_norm = b.get("out_norm", {D}, true);
  w.lm_head = cfg.tied_embeddings ? w.tok_embd : b.get("lm_head", {V, D}, false);
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    LayerWeights l;
    l.attn_norm = b.get(p + "attn_norm", {D}, true);
    if (cfg.attention == AttentionKind::Mla) {
      const int64_t C = cfg.kv_lora_rank, dn = cfg.mla_nope_dim, dr = cfg.mla_rope_dim;
      const int64_t dv = cfg.mla_v_dim, ql = cfg.q_lora_rank;
      if (ql == 0) {
        l.wq = b.get(p + "wq", {H * (dn + dr), D}, false);
      } else {
        l.wq_a = b.get(p + "wq_a", {ql, D}, false);
        l.q_a_norm = b.get(p + "q_a_norm", {ql}, true);
        l.wq_b = b.get(p + "wq_b", {H * (dn + dr), ql}, false);
      }
      l.wkv_a = b.get(p + "wkv_a", {C + dr, D}, false);
      l.kv_a_norm = b.get(p + "kv_a_norm", {C}, true);
      l.w_uk_t = b.get(p + "w_uk_t", {H * C, dn}, false);
      l.w_uv = b.get(p + "w_uv", {H * dv, C}, false);
      l.wo = b.get(p + "wo", {D, H * dv}, false);
    } else {
      const int64_t q_dim = H * cfg.head_dim, kv_dim = cfg.num_kv_heads * cfg.head_dim;
      l.wq = b.get(p + "wq", {q_dim, D}, false);
      l.wk = b.get(p + "wk", {kv_dim, D}, false);
      l.wv = b.get(p + "wv", {kv_dim, D}, false);
      if (cfg.qkv_bias) {
        l.bq = b.get(p + "bq", {q_dim}, true);
        l.bk = b.get(p + "bk", {kv_dim}, true);
        l.bv = b.get(p + "bv", {kv_dim}, true);
      }
      l.wo = b.get(p + "wo", {D, q_dim}, false);
    }
    l.ffn_norm = b.get(p + "ffn_norm", {D}, true);
    if (cfg.is_moe_layer(i)) {
      const int64_t E = cfg.num_experts, Im = cfg.moe_intermediate;
      l.router = b.get(p + "router", {E, D}, true);
      if (cfg.router_bias) l.router_bias = b.get(p + "router_bias", {E}, true);
      for (int64_t e = 0; e < E; ++e)
        l.experts.push_back(bind_ffn(b, p + "experts." + std::to_string(e) + ".", D, Im));
      if (cfg.num_shared_experts > 0)
        l.shared = bind_ffn(b, p + "shared.", D, Im * cfg.num_shared_experts);
    } else {
      l.ffn = bind_ffn(b, p, D, cfg.intermediate_size);
    }
    w.layers.push_back(std::move(l));
  }
  return w;
}

Model::Model(const ModelConfig& config, const std::map<std::string, Tensor>& tensors, int threads)
    : cfg_(config), pool_(threads < 1 ? 1 : threads) {
  cfg_.validate();
  caches_.push_back(make_cache(cfg_));
  w_ = bind_weights(cfg_, tensors);
  inv_freq_ = cfg_.rope_inv_freq();
}

int64_t Model::open_sequence() {
  for (size_t id = 1; id < caches_.size(); ++id) {
    if (!caches_[id]) {
      caches_[id] = make_cache(cfg_);
      return int64_t(id);
    }
  }
  caches_.push_back(make_cache(cfg_));
  return int64_t(caches_.size()) - 1;
}

void Model::close_sequence(int64_t id) {
  sequence(id);  // checks it
  if (id == 0) throw std::invalid_argument("sequence 0 cannot be closed");
  caches_[size_t(id)].reset();
}

KVCache& Model::sequence(int64_t id) {
  if (id < 0 || id >= int64_t(caches_.size()) || !caches_[size_t(id)])
    throw std::invalid_argument("no open sequence " + std::to_string(id));
  return *caches_[size_t(id)];
}

int64_t Model::cache_bytes() const {
  int64_t total = 0;
  for (const auto& c : caches_)
    if (c) total += c->bytes_allocated();
  return total;
}

}  // namespace r1lite
