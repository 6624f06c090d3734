// The Python module r1lite._core: the only file that knows pybind11.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "core/bandwidth.h"
#include "core/cpu_features.h"
#include "cpu/ops.h"
#include "cpu/matmul.h"
#include "model/model.h"
#if R1LITE_HAVE_CUDA
#include "cuda/device_model.h"
#endif

namespace py = pybind11;
using namespace r1lite;

namespace {

Isa isa_from_name(const std::string& name) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
    if (name == isa_name(isa)) return isa;
  throw std::invalid_argument("unknown instruction set '" + name + "' (scalar, avx2, avx512)");
}

// A Tensor viewing a numpy array's buffer. `fmt` names the storage format; the array's item size
// must fit it (f32: float32, bf16: uint16 bit patterns, f16: float16, q8_0 / q4_0: the quant
// plane as int8 / uint8 with `scales` an f16 array [rows, blocks] beside it). The shapes as given
// are checked against the model's expectations when the model binds the tensor.
Tensor tensor_from_array(const std::string& name, const py::array& a, const std::string& fmt,
                         const py::object& scales = py::none()) {
  Tensor t;
  if (!dtype_from_name(fmt.c_str(), &t.dtype))
    throw std::invalid_argument("tensor '" + name + "': unknown format '" + fmt + "'");
  if (size_t(a.itemsize()) != dtype_size(t.dtype))
    throw std::invalid_argument("tensor '" + name + "': array item size " +
                                std::to_string(a.itemsize()) + " does not fit format " + fmt);
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument("tensor '" + name + "' is not C-contiguous");
  for (py::ssize_t i = 0; i < a.ndim(); ++i) t.shape.push_back(int64_t(a.shape(i)));
  t.data = a.data();
  if (is_quantized(t.dtype)) {
    if (scales.is_none()) throw std::invalid_argument("tensor '" + name + "' (" + fmt + ") has no scales");
    const auto s = scales.cast<py::array>();
    if (s.itemsize() != 2 || !(s.flags() & py::array::c_style) || s.ndim() != 2)
      throw std::invalid_argument("tensor '" + name + "': scales must be a C-contiguous 2-D f16 array");
    t.scales = static_cast<const uint16_t*>(s.data());
    t.scale_shape = {int64_t(s.shape(0)), int64_t(s.shape(1))};
  }
  return t;
}

template <class T>
T get_key(const py::dict& d, const char* key) {
  if (!d.contains(key)) throw std::invalid_argument(std::string("model config lacks '") + key + "'");
  return d[key].cast<T>();
}

// Keys that only some architectures have (configs written before them lack them too).
template <class T>
T get_key_or(const py::dict& d, const char* key, T fallback) {
  return d.contains(key) && !d[key].is_none() ? d[key].cast<T>() : fallback;
}

void mla_from_dict(const py::dict& d, ModelConfig& c) {
  c.attention = AttentionKind::Mla;
  c.q_lora_rank = get_key<int64_t>(d, "q_lora_rank");
  c.kv_lora_rank = get_key<int64_t>(d, "kv_lora_rank");
  c.mla_nope_dim = get_key<int64_t>(d, "qk_nope_head_dim");
  c.mla_rope_dim = get_key<int64_t>(d, "qk_rope_head_dim");
  c.mla_v_dim = get_key<int64_t>(d, "v_head_dim");
}

void moe_from_dict(const py::dict& d, ModelConfig& c) {
  c.num_experts = get_key<int64_t>(d, "num_experts");
  c.num_shared_experts = get_key<int64_t>(d, "num_shared_experts");
  c.experts_per_token = get_key<int64_t>(d, "experts_per_token");
  c.moe_intermediate = get_key<int64_t>(d, "moe_intermediate_size");
  c.moe_first_layer = get_key<int64_t>(d, "moe_first_layer");
  c.expert_groups = get_key<int64_t>(d, "expert_groups");
  c.expert_groups_kept = get_key<int64_t>(d, "expert_groups_kept");
  const auto router = get_key<std::string>(d, "router");
  if (router == "sigmoid_group_top2") c.router = RouterKind::SigmoidGroupTop2;
  else if (router == "softmax_greedy") c.router = RouterKind::SoftmaxGreedy;
  else if (router == "softmax_group_max") c.router = RouterKind::SoftmaxGroupMax;
  else throw std::invalid_argument("unknown router '" + router + "'");
  c.router_bias = get_key<bool>(d, "router_bias");
  c.normalize_expert_weights = get_key<bool>(d, "normalize_expert_weights");
  c.routed_scale = get_key<float>(d, "routed_scale");
}

ModelConfig config_from_dict(const py::dict& d) {
  ModelConfig c;
  c.vocab_size = get_key<int64_t>(d, "vocab_size");
  c.hidden_size = get_key<int64_t>(d, "hidden_size");
  c.num_layers = get_key<int64_t>(d, "num_layers");
  c.num_heads = get_key<int64_t>(d, "num_heads");
  c.num_kv_heads = get_key<int64_t>(d, "num_kv_heads");
  c.head_dim = get_key<int64_t>(d, "head_dim");
  c.intermediate_size = get_key<int64_t>(d, "intermediate_size");
  c.norm_eps = get_key<float>(d, "norm_eps");
  c.qkv_bias = get_key<bool>(d, "qkv_bias");
  c.tied_embeddings = get_key<bool>(d, "tied_embeddings");
  c.context = get_key<int64_t>(d, "context");
  const auto rope = get_key<std::string>(d, "rope_kind");
  if (rope == "default") {
    c.rope_kind = RopeKind::Default;
  } else if (rope == "llama3") {
    c.rope_kind = RopeKind::Llama3;
    c.rope_factor = get_key<float>(d, "rope_factor");
    c.rope_low_freq_factor = get_key<float>(d, "rope_low_freq_factor");
    c.rope_high_freq_factor = get_key<float>(d, "rope_high_freq_factor");
    c.rope_original_context = get_key<int64_t>(d, "rope_original_context");
  } else if (rope == "yarn") {
    c.rope_kind = RopeKind::Yarn;
    c.rope_factor = get_key<float>(d, "rope_factor");
    c.rope_original_context = get_key<int64_t>(d, "rope_original_context");
    c.yarn_beta_fast = get_key<float>(d, "yarn_beta_fast");
    c.yarn_beta_slow = get_key<float>(d, "yarn_beta_slow");
  } else {
    throw std::invalid_argument("unknown rope kind '" + rope + "'");
  }
  c.rope_theta = get_key<float>(d, "rope_theta");
  c.yarn_attn_factor = get_key_or<float>(d, "rope_attn_factor", 1.f);
  c.attn_scale_mult = get_key_or<float>(d, "attn_scale_mult", 1.f);
  c.rope_freq_factors = get_key_or<std::vector<float>>(d, "rope_freq_factors", {});
  const auto attention = get_key_or<std::string>(d, "attention", "gqa");
  if (attention == "mla") mla_from_dict(d, c);
  else if (attention != "gqa") throw std::invalid_argument("unknown attention '" + attention + "'");
  if (get_key_or<int64_t>(d, "num_experts", 0) > 0) moe_from_dict(d, c);
  return c;
}

// The Python-facing model: a core model (the CPU's Model or the GPU's DeviceModel, same
// interface) plus the arrays its weights point into, and a lock so that calls from several Python
// threads run one after another.
template <class Core>
class PyModel {
 public:
  // make(views) builds the core from the tensors as views of the given arrays.
  template <class Make>
  PyModel(const py::dict& tensors, Make make) {
    std::map<std::string, Tensor> views;
    for (auto item : tensors) {
      const auto name = item.first.cast<std::string>();
      const auto entry = item.second.cast<py::tuple>();
      if (entry.size() != 2 && entry.size() != 3)
        throw std::invalid_argument("tensor '" + name + "': expected (array, format[, scales])");
      const auto arr = entry[0].cast<py::array>();
      const py::object scales = entry.size() == 3 ? py::object(entry[2]) : py::object(py::none());
      views[name] = tensor_from_array(name, arr, entry[1].cast<std::string>(), scales);
      keep_alive_.push_back(entry);
    }
    model_ = make(views);
  }

  py::array_t<float> forward(const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& tokens,
                             bool all_logits) {
    const int64_t n = token_count(tokens);
    const int64_t vocab = model_->config().vocab_size;
    py::array_t<float> out(all_logits ? std::vector<py::ssize_t>{py::ssize_t(n), py::ssize_t(vocab)}
                                      : std::vector<py::ssize_t>{py::ssize_t(vocab)});
    const int32_t* tok = tokens.data();
    float* dst = out.mutable_data();
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mu_);
      model_->forward(tok, n, all_logits, dst);
    }
    return out;
  }

  // The core model, under the lock and without the GIL.
  template <class Fn>
  auto locked(Fn fn) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mu_);
    return fn(*model_);
  }

  void reset() { locked([](Core& m) { m.reset(); }); }

  // segments: a list of (sequence id, 1-D int32 tokens); logits [len(segments), V] of each
  // segment's last token.
  py::array_t<float> forward_batch(const py::list& segments) {
    std::vector<int64_t> seqs, lens;
    std::vector<int32_t> tokens;
    for (const auto& item : segments) {
      const auto seg = item.cast<py::tuple>();
      if (seg.size() != 2) throw std::invalid_argument("a segment is (sequence id, tokens)");
      const auto ids = seg[1].cast<py::array_t<int32_t, py::array::c_style | py::array::forcecast>>();
      if (ids.ndim() != 1) throw std::invalid_argument("segment tokens must be a 1-D array");
      seqs.push_back(seg[0].cast<int64_t>());
      lens.push_back(ids.shape(0));
      tokens.insert(tokens.end(), ids.data(), ids.data() + ids.shape(0));
    }
    const auto vocab = py::ssize_t(model_->config().vocab_size);
    py::array_t<float> out({py::ssize_t(seqs.size()), vocab});
    float* dst = out.mutable_data();
    locked([&](Core& m) { m.forward_batch(tokens.data(), seqs.data(), lens.data(), int64_t(seqs.size()), dst); });
    return out;
  }

  Core& core() { return *model_; }
  static int64_t token_count(const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& tokens) {
    if (tokens.ndim() != 1) throw std::invalid_argument("tokens must be a 1-D array");
    if (tokens.shape(0) == 0) throw std::invalid_argument("tokens is empty");
    return tokens.shape(0);
  }

 private:
  std::unique_ptr<Core> model_;
  std::vector<py::object> keep_alive_;
  std::mutex mu_;
};

// The methods both model classes offer (python/r1lite/model.py uses only these).
template <class Core>
void def_model_methods(py::class_<PyModel<Core>>& cls) {
  using P = PyModel<Core>;
  cls.def("forward", &P::forward, py::arg("tokens"), py::arg("all_logits"),
          "Feed tokens after the cached ones; logits of every position or of the last.")
      .def("reset", &P::reset, "Empty the KV cache.")
      .def("forward_batch", &P::forward_batch, py::arg("segments"),
           "Tokens of several sequences [(id, tokens), ...] in one pass; logits of each last token.")
      .def("open_sequence", [](P& p) { return p.locked([](Core& m) { return m.open_sequence(); }); },
           "A new sequence with its own cache: its id.")
      .def("close_sequence", [](P& p, int64_t id) { p.locked([id](Core& m) { m.close_sequence(id); }); },
           py::arg("id"))
      .def("sequence_length", [](P& p, int64_t id) { return p.locked([id](Core& m) { return m.sequence_length(id); }); },
           py::arg("id"))
      .def_property_readonly("n_past", [](P& p) { return p.core().n_past(); })
      .def_property_readonly("cache_bytes", [](P& p) { return p.core().cache_bytes(); })
      .def_property_readonly("cache_bytes_per_token", [](P& p) { return p.core().cache_bytes_per_token(); })
      .def_property_readonly("threads", [](P& p) { return p.core().threads(); })
      .def_property_readonly("context", [](P& p) { return p.core().config().context; });
}

py::array_t<float> matmul_for_test(const py::array_t<float, py::array::c_style | py::array::forcecast>& x,
                                   const py::array& w, const std::string& fmt, const std::string& isa,
                                   const py::object& scales) {
  if (x.ndim() != 2 || w.ndim() != 2) throw std::invalid_argument("x and w must be 2-D");
  Tensor wt = tensor_from_array("w", w, fmt, scales);
  if (is_quantized(wt.dtype)) {  // logical shape from the activations' inner size
    const std::vector<int64_t> want{wt.shape[0], row_bytes(wt.dtype, x.shape(1))};
    const std::vector<int64_t> want_s{wt.shape[0], (x.shape(1) + kQuantBlock - 1) / kQuantBlock};
    if (wt.shape != want || wt.scale_shape != want_s)
      throw std::invalid_argument("quantized planes do not fit the inner size");
    wt.shape = {wt.shape[0], int64_t(x.shape(1))};
  }
  if (x.shape(1) != wt.cols()) throw std::invalid_argument("x and w disagree on the inner size");
  py::array_t<float> y({x.shape(0), py::ssize_t(wt.rows())});
  matmul_with_isa(isa_from_name(isa), x.data(), x.shape(0), wt, y.mutable_data());
  return y;
}

#if R1LITE_HAVE_CUDA
void def_device_model(py::module_& m) {
  using P = PyModel<DeviceModel>;
  py::class_<P> cls(m, "DeviceModel");
  cls.def(py::init([](const py::dict& config, const py::dict& tensors, int device) {
            return std::make_unique<P>(tensors, [&](const std::map<std::string, Tensor>& views) {
              return std::make_unique<DeviceModel>(config_from_dict(config), views, device);
            });
          }),
          py::arg("config"), py::arg("tensors"), py::arg("device") = 0,
          "Upload the weights to CUDA device `device` and run the forward pass there.");
  def_model_methods(cls);
  cls.def("forward_argmax",
          [](P& p, const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& tokens) {
            const int64_t n = P::token_count(tokens);
            const int32_t* ids = tokens.data();
            return p.locked([&](DeviceModel& dm) { return dm.forward_argmax(ids, n); });
          },
          py::arg("tokens"), "Feed tokens; the argmax of the last logits, computed on the device.")
      .def("set_graphs", [](P& p, bool on) { p.locked([on](DeviceModel& dm) { dm.set_graphs(on); }); },
           py::arg("on"), "Replay decode steps as a captured CUDA graph (default on).")
      .def("copy_bandwidth",
           [](P& p, int64_t bytes, int repeats) {
             return p.locked([&](DeviceModel& dm) { return dm.copy_bandwidth(bytes, repeats); });
           },
           py::arg("bytes"), py::arg("repeats") = 10,
           "Best device-to-device copy rate over `bytes`, bytes read + written per second.")
      .def_property_readonly("device_name", [](P& p) { return p.core().device_name(); })
      .def_property_readonly("weight_bytes", [](P& p) { return p.core().weight_bytes(); });
  m.def("cuda_unavailable_reason", &cuda_unavailable_reason,
        "'' when a CUDA device can be used, else why not.");
}
#else
void def_device_model(py::module_& m) {
  m.def("cuda_unavailable_reason",
        [] { return std::string("this r1lite was built without CUDA (no nvcc when it was compiled)"); },
        "'' when a CUDA device can be used, else why not.");
}
#endif

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "r1lite's C++ core";

  py::class_<PyModel<Model>> cpu_model(m, "Model");
  cpu_model.def(py::init([](const py::dict& config, const py::dict& tensors, int threads) {
                  return std::make_unique<PyModel<Model>>(tensors, [&](const std::map<std::string, Tensor>& views) {
                    return std::make_unique<Model>(config_from_dict(config), views, threads);
                  });
                }),
                py::arg("config"), py::arg("tensors"), py::arg("threads"));
  def_model_methods(cpu_model);
  def_device_model(m);

  m.attr("cuda_built") = bool(R1LITE_HAVE_CUDA);
  m.attr("cuda_option") = std::string(R1LITE_CUDA_OPTION);  // the build's R1LITE_CUDA
  m.def("cpu_features", [] {
    const CpuFeatures& f = cpu_features();
    py::dict d;
    d["avx2"] = f.avx2;
    d["avx512"] = f.avx512;
    d["avx512_vnni"] = f.avx512_vnni;
    d["avx512_bf16"] = f.avx512_bf16;
    d["gfni"] = f.gfni;
    return d;
  });
  m.def(
      "measure_read_bandwidth",
      [](int64_t bytes, int threads, int repeats) {
        if (bytes < 8 || threads < 1 || repeats < 1) throw std::invalid_argument("bad arguments");
        py::gil_scoped_release release;
        ThreadPool pool(threads);
        return measure_read_bandwidth(pool, bytes, repeats);
      },
      py::arg("bytes"), py::arg("threads"), py::arg("repeats") = 5,
      "Best read bandwidth (bytes/s) over a buffer of `bytes`, with `threads` threads.");
  m.def(
      "quantize_activations",
      [](const py::array_t<float, py::array::c_style | py::array::forcecast>& x) {
        if (x.ndim() != 2) throw std::invalid_argument("x must be 2-D");
        const int64_t n = x.shape(0), in = x.shape(1), blocks = (in + kQuantBlock - 1) / kQuantBlock;
        py::array_t<int8_t> q({py::ssize_t(n), py::ssize_t(blocks * kQuantBlock)});
        py::array_t<float> d({py::ssize_t(n), py::ssize_t(blocks)});
        std::vector<int32_t> sums(size_t(n * blocks));
        quantize_activations(x.data(), n, in, q.mutable_data(), d.mutable_data(), sums.data());
        return py::make_tuple(q, d);
      },
      py::arg("x"), "The int8 blocks and scales the quantized matmuls compute with.");
  m.def(
      "weighted_sum",
      [](const py::array_t<float, py::array::c_style | py::array::forcecast>& p,
         const py::array_t<float, py::array::c_style | py::array::forcecast>& rows,
         const std::string& isa, int64_t dim) {
        if (rows.ndim() != 2 || p.ndim() != 2 || p.shape(1) != rows.shape(0))
          throw std::invalid_argument("need p [heads, count] and rows [count, ld]");
        if (dim < 0) dim = rows.shape(1);
        if (dim > rows.shape(1)) throw std::invalid_argument("dim exceeds the rows' width");
        const int64_t heads = p.shape(0);
        py::array_t<float> out({py::ssize_t(heads), py::ssize_t(dim)});
        std::fill(out.mutable_data(), out.mutable_data() + heads * dim, 0.f);
        weighted_sum_with_isa(isa_from_name(isa), p.data(), p.shape(1), heads, rows.data(),
                              rows.shape(0), dim, rows.shape(1), out.mutable_data(), dim);
        return out;
      },
      py::arg("p"), py::arg("rows"), py::arg("isa"), py::arg("dim") = -1,
      "p · rows[:, :dim] for p [heads, count] with one ISA's kernel (for tests).");
  m.def(
      "exp",
      [](py::array_t<float, py::array::c_style | py::array::forcecast> x) {
        py::array_t<float> out(x.size());
        std::copy_n(x.data(), x.size(), out.mutable_data());
        exp_inplace(out.mutable_data(), x.size());
        return out;
      },
      py::arg("x"), "e^x of a flat array with the exp of softmax and SwiGLU (for tests).");
  m.def(
      "config_facts",
      [](const py::dict& config) {
        ModelConfig c = config_from_dict(config);
        c.validate();
        py::dict d;
        d["rope_inv_freq"] = c.rope_inv_freq();
        d["cache_values_per_token_per_layer"] = c.cache_values_per_token();
        return d;
      },
      py::arg("config"), "What the core derives from a config: rope frequencies, cache size.");
  m.def("isa_supported", [](const std::string& name) { return isa_supported(isa_from_name(name)); });
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("set_active_isa", [](const std::string& name) { set_active_isa(isa_from_name(name)); });
  m.def("matmul", &matmul_for_test, py::arg("x"), py::arg("w"), py::arg("fmt"), py::arg("isa"),
        py::arg("scales") = py::none(),
        "x·wᵀ with one ISA's kernel on one thread (for kernel tests).");
}
