// Binding r1lite-named tensors to the model's weights (with shape and format checks), the run
// state's buffers, and the CPU model's sequences.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "model/model.h"
#include "core/formats.h"
#include "model/run_sizes.h"

namespace r1lite {

namespace {

// The tensor `name` from the given map, checked against the shape and kind the model expects.
Tensor checked_tensor(const std::map<std::string, Tensor>& tensors, const std::string& name,
                      const std::vector<int64_t>& shape, WeightKind kind) {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw std::invalid_argument("missing tensor '" + name + "'");
  Tensor t = it->second;
  if (kind == WeightKind::F32 && t.dtype != DType::F32)
    throw std::invalid_argument("tensor '" + name + "' must be f32, got " + dtype_name(t.dtype));
  if (!t.data) throw std::invalid_argument("tensor '" + name + "' has no data");
  const FormatInfo& f = format_info(t.dtype);
  if (f.layout == Layout::Blocks) {
    // GGUF's blocks as bound (bindings.cpp): bytes [rows, row bytes], whole blocks per row.
    if (shape.size() != 2 || shape[1] % f.block != 0)
      throw std::invalid_argument("tensor '" + name + "' of shape " + shape_str(shape) + " cannot be " +
                                  f.name + " (rows of whole " + std::to_string(f.block) + "-value blocks)");
    const std::vector<int64_t> want{shape[0], row_bytes(t.dtype, shape[1])};
    if (t.shape != want)
      throw std::invalid_argument("tensor '" + name + "' (" + f.name + ") has " + shape_str(t.shape) +
                                  " bytes, expected " + shape_str(want) + " for shape " + shape_str(shape));
    t.shape = shape;  // logical from here on
    return t;
  }
  if (has_scale_plane(t.dtype)) {
    // The planes' shapes as bound (bindings.cpp) are [rows, row bytes] and [rows, blocks].
    if (shape.size() != 2)
      throw std::invalid_argument("tensor '" + name + "' is a vector and cannot be " + dtype_name(t.dtype));
    const int64_t blocks = (shape[1] + kQuantBlock - 1) / kQuantBlock;
    const std::vector<int64_t> want_q{shape[0], row_bytes(t.dtype, shape[1])};
    const std::vector<int64_t> want_s{shape[0], blocks};
    if (t.shape != want_q || t.scale_shape != want_s)
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

}  // namespace

Weights bind_weights(const ModelConfig& cfg, const std::map<std::string, Tensor>& tensors) {
  Weights w;
  for_each_weight(cfg, w, [&](const std::string& name, Tensor& slot, const std::vector<int64_t>& shape,
                              WeightKind kind) { slot = checked_tensor(tensors, name, shape, kind); });
  if (cfg.tied_embeddings) w.lm_head = w.tok_embd;
  return w;
}

std::vector<TensorSpec> tensor_specs(const ModelConfig& cfg) {
  std::vector<TensorSpec> specs;
  Weights w;
  for_each_weight(cfg, w, [&](const std::string& name, Tensor&, const std::vector<int64_t>& shape,
                              WeightKind kind) { specs.push_back({name, shape, kind}); });
  return specs;
}

void RunState::resize(const ModelConfig& c, int64_t n) {
  const RunSizes s = RunSizes::for_model(c);
  auto fit = [n](auto& v, int64_t per_token) { v.resize(size_t(n * per_token)); };
  fit(x, s.hidden);
  fit(xn, s.hidden);
  fit(proj, s.hidden);
  fit(gate, s.ffn);
  fit(up, s.ffn);
  fit(cos, s.rope_half);
  fit(sin, s.rope_half);
  fit(q, s.q);
  fit(k, s.kv);
  fit(v, s.kv);
  fit(att, s.att);
  fit(q_a, s.q_a);
  fit(kv_a, s.kv_a);
  fit(q_abs, s.q_abs);
  fit(latent, s.latent);
  fit(router_logits, s.experts);
  fit(expert_ids, s.chosen);
  fit(expert_weights, s.chosen);
  fit(routed, s.experts ? s.hidden : 0);
  fit(expert_in, s.experts ? s.hidden : 0);
  fit(expert_out, s.experts ? s.hidden : 0);
  // one token's chosen experts (decode: moe.cpp's moe_one_token), whatever n is
  chosen_gate.resize(size_t(s.chosen * c.moe_intermediate_size));
  chosen_up.resize(size_t(s.chosen * c.moe_intermediate_size));
  chosen_out.resize(size_t(s.chosen * s.hidden));
}

Model::Model(const ModelConfig& config, const std::map<std::string, Tensor>& tensors, int threads)
    : cfg_(config), pool_(threads < 1 ? 1 : threads) {
  cfg_.validate();
  caches_.push_back(make_cache());
  w_ = bind_weights(cfg_, tensors);
  inv_freq_ = cfg_.rope_inv_freq();
}

std::unique_ptr<KVCache> Model::make_cache() const {
  return std::make_unique<KVCache>(KvLayout::for_model(cfg_), cfg_.context);
}

int64_t Model::open_sequence() {
  for (size_t id = 1; id < caches_.size(); ++id) {
    if (!caches_[id]) {
      caches_[id] = make_cache();
      return int64_t(id);
    }
  }
  caches_.push_back(make_cache());
  return int64_t(caches_.size()) - 1;
}

void Model::close_sequence(int64_t id) {
  sequence(id);  // checks it
  if (id == 0) throw std::invalid_argument("sequence 0 cannot be closed");
  caches_[size_t(id)].reset();
}

void Model::truncate_sequence(int64_t id, int64_t n) { sequence(id).truncate(n); }

int64_t Model::fork_sequence(int64_t id, int64_t n) {
  std::unique_ptr<KVCache> copy = sequence(id).copy_prefix(n);
  const int64_t fork = open_sequence();
  caches_[size_t(fork)] = std::move(copy);
  return fork;
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

// -- activation recording (importance matrices) -------------------------------------------

void Model::record_activations(bool on) {
  weight_names_.clear();
  if (!on) return;
  stats_.clear();
  for_each_weight(cfg_, w_, [&](const std::string& name, Tensor& slot, const std::vector<int64_t>&, WeightKind) {
    weight_names_[&slot] = name;
  });
  weight_names_[&w_.lm_head] = cfg_.tied_embeddings ? "tok_embd" : "lm_head";
}

std::map<std::string, ActivationStat> Model::activation_stats() const { return stats_; }

void Model::record(const Tensor& w, const float* x, int64_t n, int64_t ldx, int64_t cols, int64_t group,
                   int64_t groups) {
  const auto it = weight_names_.find(&w);
  if (it == weight_names_.end()) return;
  ActivationStat& s = stats_[it->second];
  if (s.sum2.empty()) {
    s.cols = cols, s.groups = groups;
    s.sum2.assign(size_t(cols * groups), 0.0);
  }
  double* acc = &s.sum2[size_t(group * cols)];
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * ldx;
    for (int64_t j = 0; j < cols; ++j) acc[j] += double(xi[j]) * double(xi[j]);
  }
  if (group == 0) s.count += n;
}

}  // namespace r1lite
