// Binding r1lite-named tensors to the model's weight struct, with shape and format checks.
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

void RunState::resize(const ModelConfig& c, int64_t n) {
  const int64_t q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
  x.resize(size_t(n * c.hidden_size));
  xn.resize(size_t(n * c.hidden_size));
  q.resize(size_t(n * q_dim));
  k.resize(size_t(n * kv_dim));
  v.resize(size_t(n * kv_dim));
  att.resize(size_t(n * q_dim));
  proj.resize(size_t(n * c.hidden_size));
  gate.resize(size_t(n * c.intermediate_size));
  up.resize(size_t(n * c.intermediate_size));
  cos.resize(size_t(n * c.head_dim / 2));
  sin.resize(size_t(n * c.head_dim / 2));
}

Model::Model(const ModelConfig& config, const std::map<std::string, Tensor>& tensors, int threads)
    : cfg_(config),
      pool_(threads < 1 ? 1 : threads),
      cache_(config.num_layers, config.num_kv_heads, config.head_dim, config.context) {
  cfg_.validate();
  const Binder b(tensors);
  const int64_t D = cfg_.hidden_size, V = cfg_.vocab_size, I = cfg_.intermediate_size;
  const int64_t q_dim = cfg_.num_heads * cfg_.head_dim, kv_dim = cfg_.num_kv_heads * cfg_.head_dim;

  w_.tok_embd = b.get("tok_embd", {V, D}, false);
  w_.out_norm = b.get("out_norm", {D}, true);
  w_.lm_head = cfg_.tied_embeddings ? w_.tok_embd : b.get("lm_head", {V, D}, false);
  for (int64_t i = 0; i < cfg_.num_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    LayerWeights l;
    l.attn_norm = b.get(p + "attn_norm", {D}, true);
    l.wq = b.get(p + "wq", {q_dim, D}, false);
    l.wk = b.get(p + "wk", {kv_dim, D}, false);
    l.wv = b.get(p + "wv", {kv_dim, D}, false);
    if (cfg_.qkv_bias) {
      l.bq = b.get(p + "bq", {q_dim}, true);
      l.bk = b.get(p + "bk", {kv_dim}, true);
      l.bv = b.get(p + "bv", {kv_dim}, true);
    }
    l.wo = b.get(p + "wo", {D, q_dim}, false);
    l.ffn_norm = b.get(p + "ffn_norm", {D}, true);
    l.w_gate = b.get(p + "w_gate", {I, D}, false);
    l.w_up = b.get(p + "w_up", {I, D}, false);
    l.w_down = b.get(p + "w_down", {D, I}, false);
    w_.layers.push_back(l);
  }
  inv_freq_ = cfg_.rope_inv_freq();
}

}  // namespace r1lite
