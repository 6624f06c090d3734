// DeviceModel: the forward pass of csrc/model/forward.cpp, mla.cpp and moe.cpp on the GPU, step
// for step, with the kernels of csrc/cuda. Weights keep their formats and planes; every buffer
// lives on the device; only token ids and positions go up and logits (or one argmax) come down.
#include "cuda/device_model.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/kernels.cuh"
#include "model/kv_layout.h"
#include "model/run_sizes.h"
#include "model/weights.h"

namespace r1lite {

using namespace cuda;

namespace {

// Rows one pass over the layers takes; longer inputs go through in chunks (bounds the buffers
// and the grid's second dimension).
constexpr int64_t kMaxChunk = 512;

// Device memory for `count` values of T that only grows.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { if (ptr_) cudaFree(ptr_); }
  // Room for count values; true when the buffer moved (captured graphs hold stale pointers then).
  bool reserve(int64_t count) {
    if (count <= capacity_) return false;
    if (ptr_) CUDA_CHECK(cudaFree(ptr_));
    ptr_ = nullptr;
    capacity_ = 0;
    CUDA_CHECK(cudaMalloc(&ptr_, size_t(count) * sizeof(T)));
    capacity_ = count;
    return true;
  }
  T* get() const { return ptr_; }
  int64_t capacity() const { return capacity_; }

 private:
  T* ptr_ = nullptr;
  int64_t capacity_ = 0;
};

// The KV cache in device pages (kv_layout.h; device_types.cuh CacheView).
class DeviceCache {
 public:
  DeviceCache(const KvLayout& layout, int64_t max_positions) : layout_(layout), max_positions_(max_positions) {
    table_.reserve(ceil_div(max_positions, KvLayout::kPagePositions));
  }
  ~DeviceCache() { free_pages(); }

  void reserve(int64_t n, cudaStream_t stream) {
    if (n > max_positions_)
      throw std::invalid_argument("context full: " + std::to_string(n) + " positions requested, " +
                                  std::to_string(max_positions_) + " allowed");
    while (int64_t(pages_.size()) * KvLayout::kPagePositions < n) {
      float* page = nullptr;
      CUDA_CHECK(cudaMalloc(&page, size_t(layout_.page_bytes())));
      pages_.push_back(page);
    }
    // Every page allocated so far goes up, also after an earlier call failed halfway.
    if (pages_.size() != uploaded_) {  // stream-ordered, so the steps after it see the new pages
      CUDA_CHECK(cudaMemcpyAsync(table_.get(), pages_.data(), pages_.size() * sizeof(float*),
                                 cudaMemcpyHostToDevice, stream));
      CUDA_CHECK(cudaStreamSynchronize(stream));  // pages_ may change before a later copy
      uploaded_ = pages_.size();
    }
  }
  void clear() {
    free_pages();
    length = 0;
  }
  CacheView view() const { return {table_.get(), layout_}; }
  int64_t bytes_allocated() const { return int64_t(pages_.size()) * layout_.page_bytes(); }
  int64_t bytes_per_position() const { return layout_.bytes_per_position(); }

  int64_t length = 0;

 private:
  void free_pages() {
    for (float* p : pages_) cudaFree(p);
    pages_.clear();
    uploaded_ = 0;
  }
  KvLayout layout_;
  int64_t max_positions_;
  std::vector<float*> pages_;
  size_t uploaded_ = 0;  // entries of the device table that are current
  DeviceBuffer<float*> table_;
};

// Indices of a layer's matrices in the descriptor array (-1: absent). Per-head matrices
// (w_uk_t, w_uv) and experts occupy consecutive descriptors, one per head or expert.
// The descriptor of a matrix whose data (and scales) already live on the device.
DevMatrix dev_matrix(const Tensor& t) {
  DevMatrix m;
  m.data = t.data;
  m.scales = t.scales;
  m.dtype = int32_t(t.dtype);
  m.rows = t.rows();
  m.cols = t.cols();
  m.blocks = ceil_div(m.cols, 32);
  m.row_bytes = row_bytes(t.dtype, m.cols);
  return m;
}

struct LayerMats {
  int64_t wq = -1, wk = -1, wv = -1, wo = -1, wq_a = -1, wq_b = -1, wkv_a = -1, w_uk_t = -1, w_uv = -1;
  int64_t gate = -1, up = -1, down = -1;                    // dense FFN
  int64_t router = -1, experts_gate = -1, experts_up = -1, experts_down = -1;
  int64_t shared_gate = -1, shared_up = -1, shared_down = -1;
};

}  // namespace

std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear it
    return std::string("no usable CUDA driver or device: ") + cudaGetErrorString(status);
  }
  return count == 0 ? "no CUDA device found" : "";
}

std::string cuda_device_name(int index) {
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return prop.name;
}

struct DeviceModel::Impl {
  ModelConfig cfg;
  int device = 0;
  int sms = 0;
  cudaStream_t stream = nullptr;
  Weights w;                        // the host views, re-pointed at device memory
  std::vector<void*> allocations;   // one per uploaded tensor
  int64_t weight_bytes = 0;
  std::vector<DevMatrix> descs;     // host copy of the descriptors
  DeviceBuffer<DevMatrix> d_descs;
  std::vector<LayerMats> mats;
  int64_t lm_head = -1;
  int64_t q_blocks_per_row = 1;     // quantized activation blocks one row of x can need
  DeviceBuffer<float> inv_freq;
  std::unique_ptr<DeviceCache> cache;

  // Activations of one chunk (names as RunState in model.h).
  DeviceBuffer<float> x, xn, proj, q, k, v, att, gate, up, q_a, kv_a, q_abs, latent;
  DeviceBuffer<float> router_logits, expert_weights, expert_in, expert_gate, expert_up, expert_out;
  DeviceBuffer<int32_t> expert_ids, expert_offsets, slot_at, place_of;
  DeviceBuffer<float> partial, logits;
  DeviceBuffer<int8_t> xq;
  DeviceBuffer<float> xd;
  DeviceBuffer<int32_t> xs;
  DeviceBuffer<int32_t> tokens, positions, best;
  int32_t* host_staging = nullptr;  // pinned: tokens then positions of one chunk

  bool graphs = true;
  cudaGraphExec_t decode_graph = nullptr;

  ~Impl() {
    drop_graph();
    if (host_staging) cudaFreeHost(host_staging);
    for (void* p : allocations) cudaFree(p);
    if (stream) cudaStreamDestroy(stream);
  }

  void drop_graph() {
    if (decode_graph) cudaGraphExecDestroy(decode_graph);
    decode_graph = nullptr;
  }

  // ---- weights ----

  void upload_all(std::unordered_map<const void*, const void*>& uploaded, Tensor& t) {
    if (t.empty()) return;
    const int64_t rows = t.rows();
    const int64_t data_bytes = has_scale_plane(t.dtype)
                                   ? rows * row_bytes(t.dtype, t.cols())
                                   : rows * t.cols() * int64_t(dtype_size(t.dtype));
    auto upload = [&](const void* src, int64_t bytes) -> const void* {
      auto it = uploaded.find(src);
      if (it != uploaded.end()) return it->second;  // data two tensors share: one copy
      void* dst = nullptr;
      CUDA_CHECK(cudaMalloc(&dst, size_t(bytes)));
      allocations.push_back(dst);
      CUDA_CHECK(cudaMemcpy(dst, src, size_t(bytes), cudaMemcpyHostToDevice));
      weight_bytes += bytes;
      uploaded[src] = dst;
      return dst;
    };
    const void* data = upload(t.data, data_bytes);
    if (has_scale_plane(t.dtype))
      t.scales = static_cast<const uint16_t*>(upload(t.scales, rows * ceil_div(t.cols(), 32) * 2));
    t.data = data;
  }

  void upload_weights(const std::map<std::string, Tensor>& tensors) {
    w = bind_weights(cfg, tensors);
    std::unordered_map<const void*, const void*> uploaded;
    for_each_weight(cfg, w, [&](const std::string& name, Tensor& t, const std::vector<int64_t>&, WeightKind) {
      if (!t.empty() && is_block_format(t.dtype))  // GGUF's block formats: CPU kernels only so far
        throw std::invalid_argument("tensor '" + name + "' is " + dtype_name(t.dtype) +
                                    ", which the CUDA backend does not compute yet (f32, bf16, f16, "
                                    "q8_0, q4_0); run it on the CPU or convert with r1lite convert --quant q8_0");
      upload_all(uploaded, t);
    });
    if (cfg.tied_embeddings) w.lm_head = w.tok_embd;
  }

  // Descriptors of `heads` equal row slices of t; the index of the first (-1 for an absent t).
  int64_t describe(const Tensor& t, int64_t heads = 1) {
    if (t.empty()) return -1;
    const int64_t first = int64_t(descs.size()), out = t.rows() / heads;
    for (int64_t h = 0; h < heads; ++h) descs.push_back(dev_matrix(t.rows_slice(h * out, out)));
    return first;
  }

  // One descriptor per expert for each of gate, up, down (consecutive).
  void describe_experts(const std::vector<FfnWeights>& experts, LayerMats& lm) {
    lm.experts_gate = int64_t(descs.size());
    for (const FfnWeights& f : experts) describe(f.w_gate);
    lm.experts_up = int64_t(descs.size());
    for (const FfnWeights& f : experts) describe(f.w_up);
    lm.experts_down = int64_t(descs.size());
    for (const FfnWeights& f : experts) describe(f.w_down);
    const FfnWeights& first = experts[0];  // one grouped matmul: one format per batch of experts
    for (const FfnWeights& f : experts)
      if (f.w_gate.dtype != first.w_gate.dtype || f.w_up.dtype != first.w_up.dtype ||
          f.w_down.dtype != first.w_down.dtype)
        throw std::invalid_argument("cuda: the experts of a layer must share their weight formats");
  }

  void describe_all() {
    const int64_t H = cfg.num_heads;
    for (const LayerWeights& l : w.layers) {
      LayerMats lm;
      lm.wq = describe(l.wq);
      lm.wk = describe(l.wk);
      lm.wv = describe(l.wv);
      lm.wo = describe(l.wo);
      lm.wq_a = describe(l.wq_a);
      lm.wq_b = describe(l.wq_b);
      lm.wkv_a = describe(l.wkv_a);
      lm.w_uk_t = describe(l.w_uk_t, H);
      lm.w_uv = describe(l.w_uv, H);
      lm.gate = describe(l.ffn.w_gate);
      lm.up = describe(l.ffn.w_up);
      lm.down = describe(l.ffn.w_down);
      lm.router = describe(l.router);
      if (!l.experts.empty()) describe_experts(l.experts, lm);
      lm.shared_gate = describe(l.shared.w_gate);
      lm.shared_up = describe(l.shared.w_up);
      lm.shared_down = describe(l.shared.w_down);
      mats.push_back(lm);
    }
    lm_head = describe(w.lm_head);
    d_descs.reserve(int64_t(descs.size()));
    CUDA_CHECK(cudaMemcpy(d_descs.get(), descs.data(), descs.size() * sizeof(DevMatrix),
                          cudaMemcpyHostToDevice));
    // Quantized activations per row: whole rows for plain matmuls; per head for w_uk_t / w_uv;
    // per chosen expert for the experts' matmuls.
    for (const DevMatrix& m : descs) q_blocks_per_row = std::max(q_blocks_per_row, m.blocks);
    if (cfg.attention == AttentionKind::Mla)
      q_blocks_per_row = std::max({q_blocks_per_row, H * ceil_div(cfg.qk_nope_head_dim, 32),
                                   H * ceil_div(cfg.kv_lora_rank, 32)});
    if (cfg.num_experts > 0)
      q_blocks_per_row = std::max({q_blocks_per_row, cfg.experts_per_token * ceil_div(cfg.hidden_size, 32),
                                   cfg.experts_per_token * ceil_div(cfg.moe_intermediate_size, 32)});
  }

  // ---- buffers ----

  // Room for n rows (n ≤ kMaxChunk) and n_out logits rows; drops the decode graph if anything moved.
  void prepare(int64_t n, int64_t n_out) {
    const ModelConfig& c = cfg;
    const RunSizes r = RunSizes::for_model(c);
    const int64_t D = c.hidden_size, H = c.num_heads, K = std::max<int64_t>(c.experts_per_token, 1);
    bool moved = false;
    auto fit = [&](auto& buf, int64_t count) { moved |= buf.reserve(std::max<int64_t>(count, 1)); };
    fit(x, n * D); fit(xn, n * D); fit(proj, n * D);
    fit(gate, n * r.ffn); fit(up, n * r.ffn);
    fit(q, n * r.q); fit(att, n * r.att); fit(k, n * r.kv); fit(v, n * r.kv);
    fit(q_a, n * r.q_a); fit(kv_a, n * r.kv_a); fit(q_abs, n * r.q_abs); fit(latent, n * r.latent);
    if (c.num_experts > 0) {
      fit(router_logits, n * r.experts);
      fit(expert_ids, n * K); fit(expert_weights, n * K);
      fit(expert_offsets, c.num_experts + 1); fit(slot_at, n * K); fit(place_of, n * K);
      fit(expert_in, n * K * D); fit(expert_out, n * K * D);
      fit(expert_gate, n * K * c.moe_intermediate_size); fit(expert_up, n * K * c.moe_intermediate_size);
    }
    const int64_t value_dim = c.attention == AttentionKind::Mla ? c.kv_lora_rank : c.head_dim;
    fit(partial, attention_partial_floats(n, H, value_dim, attention_splits(n, H, sms)));
    fit(logits, n_out * c.vocab_size);
    fit(xq, n * q_blocks_per_row * 32); fit(xd, n * q_blocks_per_row); fit(xs, n * q_blocks_per_row);
    fit(tokens, n); fit(positions, n); fit(best, 1);
    if (moved) drop_graph();
  }

  // ---- the forward pass (same steps as Model::run) ----

  // y = x·Wᵀ for descriptor `m` (or `groups` consecutive ones).
  void mm(int64_t m, const float* xin, int64_t n, float* y, int64_t groups = 1, int64_t ldx = -1,
          int64_t x_group = 0, int64_t ldy = -1, int64_t y_group = 0,
          const int32_t* row_offsets = nullptr, int64_t max_group_rows = -1) {
    const DevMatrix& d = descs[size_t(m)];
    MatmulProblem p;
    p.mats = d_descs.get() + m;
    p.groups = groups;
    p.row_offsets = row_offsets;
    p.n = n;
    p.max_group_rows = row_offsets ? max_group_rows : n;
    p.x = xin;
    p.ldx = ldx < 0 ? d.cols : ldx;
    p.x_group = x_group;
    p.y = y;
    p.ldy = ldy < 0 ? d.rows : ldy;
    p.y_group = y_group;
    p.dtype = d.dtype;
    p.out = d.rows;
    p.in = d.cols;
    if (has_scale_plane(DType(d.dtype)) && quantized_blocks(p) > xd.capacity())
      throw std::logic_error("cuda: quantized activation scratch too small");
    matmul(p, {xq.get(), xd.get(), xs.get()}, stream);
  }

  void swiglu(int64_t g, int64_t u, int64_t dn, const float* in, int64_t n, int64_t width, float* out) {
    mm(g, in, n, gate.get());
    mm(u, in, n, up.get());
    silu_mul(gate.get(), up.get(), n * width, stream);
    mm(dn, gate.get(), n, out);
  }

  RopeArgs rope_args(const float* src, int64_t ld_src, int64_t src_head, float* dst, int64_t ld_dst,
                     int64_t dst_head, int64_t heads) const {
    return {src, ld_src, src_head, dst, ld_dst, dst_head, heads, cfg.rope_dim() / 2,
            positions.get(), inv_freq.get(), cfg.rope_attn_factor};
  }

  void gqa_block(int64_t li, int64_t n) {
    const ModelConfig& c = cfg;
    const LayerMats& m = mats[size_t(li)];
    const LayerWeights& l = w.layers[size_t(li)];
    const int64_t hd = c.head_dim, q_dim = c.num_heads * hd, kv_dim = c.num_kv_heads * hd;
    mm(m.wq, xn.get(), n, q.get());
    mm(m.wk, xn.get(), n, k.get());
    mm(m.wv, xn.get(), n, v.get());
    if (c.qkv_bias) {
      add_bias(q.get(), q_dim, l.bq.f32(), q_dim, n, stream);
      add_bias(k.get(), kv_dim, l.bk.f32(), kv_dim, n, stream);
      add_bias(v.get(), kv_dim, l.bv.f32(), kv_dim, n, stream);
    }
    if (c.qk_norm) {  // Qwen3 (ARCH.md §11): every head's query and key RMS-normed, as rows of hd
      rmsnorm(q.get(), hd, l.q_norm.f32(), hd, c.norm_eps, q.get(), hd, n * c.num_heads, stream);
      rmsnorm(k.get(), hd, l.k_norm.f32(), hd, c.norm_eps, k.get(), hd, n * c.num_kv_heads, stream);
    }
    rope(rope_args(q.get(), q_dim, hd, q.get(), q_dim, hd, c.num_heads), n, stream);
    rope(rope_args(k.get(), kv_dim, hd, k.get(), kv_dim, hd, c.num_kv_heads), n, stream);
    store_kv(k.get(), v.get(), n, cache->view(), li, positions.get(), stream);
    AttentionArgs a{q.get(), q_dim, hd, cache->view(), li, false, c.num_heads,
                    c.num_heads / c.num_kv_heads, hd, hd, positions.get(),
                    c.attn_scale_mult / std::sqrt(float(hd)), att.get(), q_dim};
    attention(a, n, attention_splits(n, c.num_heads, sms), partial.get(), stream);
    mm(m.wo, att.get(), n, proj.get());
  }

  // ARCH.md §4, absorbed: see mla.cpp for the derivation.
  void mla_block(int64_t li, int64_t n) {
    const ModelConfig& c = cfg;
    const LayerMats& m = mats[size_t(li)];
    const LayerWeights& l = w.layers[size_t(li)];
    const int64_t H = c.num_heads, C = c.kv_lora_rank, dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim;
    const int64_t qk = dn + dr, row = C + dr, ql = c.q_lora_rank, dv = c.v_head_dim;
    if (ql == 0) {
      mm(m.wq, xn.get(), n, q.get());
    } else {
      mm(m.wq_a, xn.get(), n, q_a.get());
      rmsnorm(q_a.get(), ql, l.q_a_norm.f32(), ql, kLatentNormEps, q_a.get(), ql, n, stream);
      mm(m.wq_b, q_a.get(), n, q.get());
    }
    mm(m.wkv_a, xn.get(), n, kv_a.get());
    // rotated q_pe of every head beside the absorbed part; the cache row of each token
    rope(rope_args(q.get() + dn, H * qk, qk, q_abs.get() + C, H * row, row, H), n, stream);
    store_latent(kv_a.get(), n, C, dr, l.kv_a_norm.f32(), kLatentNormEps, cache->view(), li,
                 positions.get(), inv_freq.get(), c.rope_attn_factor, stream);
    // q̃_h = W_UK[h]ᵀ·q_nope_h into the first C values of each absorbed query
    mm(m.w_uk_t, q.get(), n, q_abs.get(), H, H * qk, qk, H * row, row);
    AttentionArgs a{q_abs.get(), H * row, row, cache->view(), li, true, H, H, row, C,
                    positions.get(), c.attn_scale_mult / std::sqrt(float(qk)), latent.get(), H * C};
    attention(a, n, attention_splits(n, H, sms), partial.get(), stream);
    // o_h = W_UV[h]·ō_h, then the output projection
    mm(m.w_uv, latent.get(), n, att.get(), H, H * C, C, H * dv, dv);
    mm(m.wo, att.get(), n, proj.get());
  }

  void moe_block(int64_t li, int64_t n) {
    const ModelConfig& c = cfg;
    const LayerMats& m = mats[size_t(li)];
    const LayerWeights& l = w.layers[size_t(li)];
    const int64_t D = c.hidden_size, E = c.num_experts, K = c.experts_per_token, Im = c.moe_intermediate_size;
    mm(m.router, xn.get(), n, router_logits.get());
    const RouterArgs ra = RouterArgs::for_layer(c, l.router_bias.empty() ? nullptr : l.router_bias.f32());
    route(ra, router_logits.get(), n, expert_ids.get(), expert_weights.get(), stream);
    expert_lists(expert_ids.get(), n * K, E, expert_offsets.get(), slot_at.get(), place_of.get(), stream);
    gather_rows(xn.get(), slot_at.get(), n * K, K, D, expert_in.get(), stream);
    // every expert over its own rows (a token picks an expert at most once: ≤ n rows each)
    mm(m.experts_gate, expert_in.get(), n * K, expert_gate.get(), E, D, 0, Im, 0, expert_offsets.get(), n);
    mm(m.experts_up, expert_in.get(), n * K, expert_up.get(), E, D, 0, Im, 0, expert_offsets.get(), n);
    silu_mul(expert_gate.get(), expert_up.get(), n * K * Im, stream);
    mm(m.experts_down, expert_gate.get(), n * K, expert_out.get(), E, Im, 0, D, 0, expert_offsets.get(), n);
    const bool shared = c.num_shared_experts > 0;
    if (shared)
      swiglu(m.shared_gate, m.shared_up, m.shared_down, xn.get(), n, Im * c.num_shared_experts, proj.get());
    combine_experts(expert_out.get(), place_of.get(), expert_weights.get(), n, K, D, shared, proj.get(), stream);
  }

  // The layers over n tokens (ids and positions already on the device), then logits of rows
  // [out_first, out_first + n_out) and the argmax of the last of them.
  void layers(int64_t n, int64_t out_first, int64_t n_out) {
    const ModelConfig& c = cfg;
    const int64_t D = c.hidden_size;
    embed(dev_matrix(w.tok_embd), tokens.get(), n, x.get(), stream);
    for (int64_t li = 0; li < c.num_layers; ++li) {
      const LayerWeights& l = w.layers[size_t(li)];
      const LayerMats& m = mats[size_t(li)];
      rmsnorm(x.get(), D, l.attn_norm.f32(), D, c.norm_eps, xn.get(), D, n, stream);
      if (c.attention == AttentionKind::Mla) mla_block(li, n); else gqa_block(li, n);
      add(x.get(), proj.get(), n * D, stream);
      rmsnorm(x.get(), D, l.ffn_norm.f32(), D, c.norm_eps, xn.get(), D, n, stream);
      if (c.is_moe_layer(li)) moe_block(li, n);
      else swiglu(m.gate, m.up, m.down, xn.get(), n, c.intermediate_size, proj.get());
      add(x.get(), proj.get(), n * D, stream);
    }
    if (n_out == 0) return;
    rmsnorm(x.get() + out_first * D, D, w.out_norm.f32(), D, c.norm_eps, xn.get(), D, n_out, stream);
    mm(lm_head, xn.get(), n_out, logits.get());
    argmax(logits.get() + (n_out - 1) * c.vocab_size, c.vocab_size, best.get(), stream);
  }

  // One chunk: ids up, the layers (a replayed graph for a single token), logits of rows
  // [out_first, out_first + n_out) into host_logits (may be null), the cache advanced.
  void step(const int32_t* ids, int64_t n, int64_t out_first, int64_t n_out) {
    prepare(n, std::max<int64_t>(n_out, 1));
    const int64_t pos0 = cache->length;
    for (int64_t i = 0; i < n; ++i) {
      host_staging[i] = ids[i];
      host_staging[kMaxChunk + i] = int32_t(pos0 + i);
    }
    CUDA_CHECK(cudaMemcpyAsync(tokens.get(), host_staging, size_t(n) * 4, cudaMemcpyHostToDevice, stream));
    CUDA_CHECK(cudaMemcpyAsync(positions.get(), host_staging + kMaxChunk, size_t(n) * 4,
                               cudaMemcpyHostToDevice, stream));
    try {
      if (n == 1 && n_out == 1 && graphs) {
        if (!decode_graph) capture_decode();
        CUDA_CHECK(cudaGraphLaunch(decode_graph, stream));
      } else {
        layers(n, out_first, n_out);
      }
    } catch (...) {
      cudaStreamSynchronize(stream);  // the staging copies must finish before it is reused
      throw;
    }
    CUDA_CHECK(cudaStreamSynchronize(stream));  // also frees the staging buffer for the next chunk
    cache->length = pos0 + n;
  }

  void capture_decode() {
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    try {
      layers(1, 0, 1);
    } catch (...) {
      cudaStreamEndCapture(stream, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    const cudaError_t status = cudaGraphInstantiate(&decode_graph, graph, 0);
    cudaGraphDestroy(graph);
    if (status != cudaSuccess) decode_graph = nullptr;
    CUDA_CHECK(status);
  }

  // Feeds n tokens in chunks; logits of every row (all_logits) or of the last into host_logits
  // (may be null: then only the device-side argmax of the last row is kept).
  void run(const int32_t* ids, int64_t n, bool all_logits, float* host_logits) {
    check_tokens(ids, n, cfg.vocab_size);
    CUDA_CHECK(cudaSetDevice(device));
    cache->reserve(cache->length + n, stream);  // throws when the context is full
    const int64_t V = cfg.vocab_size;
    for (int64_t c0 = 0; c0 < n; c0 += kMaxChunk) {
      const int64_t m = std::min(kMaxChunk, n - c0);
      const bool last = c0 + m == n;
      const int64_t n_out = all_logits ? m : (last ? 1 : 0);
      step(ids + c0, m, all_logits ? 0 : m - 1, n_out);
      if (host_logits && n_out > 0)
        CUDA_CHECK(cudaMemcpy(host_logits + (all_logits ? c0 * V : 0), logits.get(),
                              size_t(n_out * V) * sizeof(float), cudaMemcpyDeviceToHost));
    }
  }
};

DeviceModel::DeviceModel(const ModelConfig& config, const std::map<std::string, Tensor>& tensors,
                         int device_index)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.cfg = config;
  m.cfg.validate();
  if (m.cfg.kv_cache != DType::F32)
    throw std::invalid_argument(std::string("cuda: the KV cache on the GPU is f32 for now, not ") +
                                dtype_name(m.cfg.kv_cache) + " (load with kv_cache='f32')");
  const std::string why = cuda_unavailable_reason();
  if (!why.empty()) throw std::runtime_error(why);
  int count = 0;
  CUDA_CHECK(cudaGetDeviceCount(&count));
  if (device_index < 0 || device_index >= count)
    throw std::invalid_argument("no CUDA device " + std::to_string(device_index) + " (" +
                                std::to_string(count) + " found)");
  const int64_t value_dim = m.cfg.attention == AttentionKind::Mla ? m.cfg.kv_lora_rank : m.cfg.head_dim;
  if (value_dim > kMaxAttentionValueDim)
    throw std::invalid_argument("cuda: attention values of " + std::to_string(value_dim) +
                                " channels (at most " + std::to_string(kMaxAttentionValueDim) + ")");
  m.device = device_index;
  CUDA_CHECK(cudaSetDevice(device_index));
  CUDA_CHECK(cudaDeviceGetAttribute(&m.sms, cudaDevAttrMultiProcessorCount, device_index));
  CUDA_CHECK(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking));
  CUDA_CHECK(cudaMallocHost(&m.host_staging, 2 * kMaxChunk * sizeof(int32_t)));
  m.upload_weights(tensors);
  m.describe_all();
  const std::vector<float> inv_freq = m.cfg.rope_inv_freq();
  m.inv_freq.reserve(int64_t(inv_freq.size()));
  CUDA_CHECK(cudaMemcpy(m.inv_freq.get(), inv_freq.data(), inv_freq.size() * sizeof(float),
                        cudaMemcpyHostToDevice));
  const ModelConfig& c = m.cfg;
  m.cache = std::make_unique<DeviceCache>(KvLayout::for_model(c), c.context);
  // The uploads ran on the legacy stream, which the non-blocking compute stream does not wait for.
  CUDA_CHECK(cudaDeviceSynchronize());
}

DeviceModel::~DeviceModel() = default;

void DeviceModel::forward(const int32_t* tokens, int64_t n, bool all_logits, float* logits) {
  impl_->run(tokens, n, all_logits, logits);
}

int32_t DeviceModel::forward_argmax(const int32_t* tokens, int64_t n) {
  impl_->run(tokens, n, false, nullptr);
  int32_t token = 0;
  CUDA_CHECK(cudaMemcpy(&token, impl_->best.get(), sizeof(int32_t), cudaMemcpyDeviceToHost));
  return token;
}

void DeviceModel::reset() {
  CUDA_CHECK(cudaSetDevice(impl_->device));
  impl_->cache->clear();
}

int64_t DeviceModel::n_past() const { return impl_->cache->length; }
int64_t DeviceModel::cache_bytes() const { return impl_->cache->bytes_allocated(); }
int64_t DeviceModel::cache_bytes_per_token() const { return impl_->cache->bytes_per_position(); }
int64_t DeviceModel::weight_bytes() const { return impl_->weight_bytes; }
const ModelConfig& DeviceModel::config() const { return impl_->cfg; }
std::string DeviceModel::device_name() const { return cuda_device_name(impl_->device); }

void DeviceModel::set_graphs(bool on) {
  impl_->graphs = on;
  if (!on) impl_->drop_graph();
}

double DeviceModel::copy_bandwidth(int64_t bytes, int repeats) {
  if (bytes < 1 || repeats < 1) throw std::invalid_argument("copy_bandwidth: bytes and repeats must be positive");
  CUDA_CHECK(cudaSetDevice(impl_->device));
  DeviceBuffer<char> src, dst;
  src.reserve(bytes);
  dst.reserve(bytes);
  CUDA_CHECK(cudaMemsetAsync(src.get(), 1, size_t(bytes), impl_->stream));
  cudaEvent_t start = nullptr, stop = nullptr;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  float best_ms = 0.f;
  for (int r = 0; r <= repeats; ++r) {  // the first copy warms up
    CUDA_CHECK(cudaEventRecord(start, impl_->stream));
    CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), size_t(bytes), cudaMemcpyDeviceToDevice, impl_->stream));
    CUDA_CHECK(cudaEventRecord(stop, impl_->stream));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (r > 0 && (best_ms == 0.f || ms < best_ms)) best_ms = ms;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 2.0 * double(bytes) / (double(best_ms) * 1e-3);
}

namespace {
[[noreturn]] void one_sequence_only() {
  throw std::invalid_argument("device='cuda' runs one sequence; several sequences (the server's "
                              "continuous batching) run on the CPU");
}
}  // namespace

void DeviceModel::forward_batch(const int32_t*, const int64_t*, const int64_t*, int64_t, float*) {
  one_sequence_only();
}
int64_t DeviceModel::open_sequence() { one_sequence_only(); }
void DeviceModel::close_sequence(int64_t) { one_sequence_only(); }
int64_t DeviceModel::sequence_length(int64_t id) {
  if (id != 0) one_sequence_only();
  return n_past();
}

}  // namespace r1lite
