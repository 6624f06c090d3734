// The Python module r1lite._core: the only file that knows pybind11.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "core/bandwidth.h"
#include "core/blocks.h"
#include "core/cpu_features.h"
#include "core/formats.h"
#include "cpu/ops.h"
#include "cpu/matmul.h"
#include "model/kv_layout.h"
#include "model/model.h"
#if R1LITE_HAVE_CUDA
#include "cuda/device_model.h"
#endif

namespace py = pybind11;
using namespace r1lite;

namespace {

DType cache_format(const std::string& name) {
  DType t;
  if (!dtype_from_name(name.c_str(), &t) || t == DType::Q4_0)
    throw std::invalid_argument("unknown cache format '" + name + "' (f32, f16, bf16, q8_0)");
  return t;
}

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
  if (has_scale_plane(t.dtype)) {
    if (scales.is_none()) throw std::invalid_argument("tensor '" + name + "' (" + fmt + ") has no scales");
    const auto s = scales.cast<py::array>();
    if (s.itemsize() != 2 || !(s.flags() & py::array::c_style) || s.ndim() != 2)
      throw std::invalid_argument("tensor '" + name + "': scales must be a C-contiguous 2-D f16 array");
    t.scales = static_cast<const uint16_t*>(s.data());
    t.scale_shape = {int64_t(s.shape(0)), int64_t(s.shape(1))};
  }
  return t;
}

// ---- the config: read from and written to a Python dict, field by field (config.h's table) ----

[[noreturn]] void bad_field(const char* key, const char* what, const py::handle& v) {
  throw std::invalid_argument(std::string("config '") + key + "' must be " + what + ", got " +
                              py::repr(v).cast<std::string>());
}

bool is_int(const py::handle& v) { return PyLong_Check(v.ptr()) && !PyBool_Check(v.ptr()); }
bool is_number(const py::handle& v) { return is_int(v) || PyFloat_Check(v.ptr()); }

void read_field(const char* key, const py::handle& v, int64_t& out) {
  if (!is_int(v)) bad_field(key, "an integer", v);
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
  if (overflow || x < 0) bad_field(key, "a non-negative 64-bit integer", v);
  out = int64_t(x);
}
void read_field(const char* key, const py::handle& v, float& out) {
  if (!is_number(v)) bad_field(key, "a number", v);
  const double x = v.cast<double>();
  if (!std::isfinite(x) || std::fabs(x) > 3.4e38) bad_field(key, "a finite number", v);
  out = float(x);
}
void read_field(const char* key, const py::handle& v, bool& out) {
  if (!PyBool_Check(v.ptr())) bad_field(key, "true or false", v);
  out = v.cast<bool>();
}
void read_field(const char* key, const py::handle& v, std::string& out) {
  if (!py::isinstance<py::str>(v)) bad_field(key, "a string", v);
  out = v.cast<std::string>();
}
void read_field(const char* key, const py::handle& v, FloatList& out) {
  if (!py::isinstance<py::list>(v) && !py::isinstance<py::tuple>(v)) bad_field(key, "a list of numbers", v);
  out.clear();
  for (const auto& item : v) {
    float f;
    read_field(key, item, f);
    out.push_back(f);
  }
}
template <class Enum, class = std::enable_if_t<std::is_enum_v<Enum>>>
void read_field(const char* key, const py::handle& v, Enum& out) {
  const auto& names = enum_names(Enum{});
  std::string what = "one of";
  for (const auto& n : names) what += " " + n;
  if (!py::isinstance<py::str>(v)) bad_field(key, what.c_str(), v);
  const auto name = v.cast<std::string>();
  const auto it = std::find(names.begin(), names.end(), name);
  if (it == names.end()) bad_field(key, what.c_str(), v);
  out = Enum(it - names.begin());
}

template <class T>
py::object field_value(const T& v) {
  if constexpr (std::is_enum_v<T>) return py::str(enum_names(v)[size_t(v)]);
  else return py::cast(v);
}

template <class T> const char* type_name(const T*) { return "int"; }
const char* type_name(const float*) { return "float"; }
const char* type_name(const bool*) { return "bool"; }
const char* type_name(const std::string*) { return "str"; }
const char* type_name(const FloatList*) { return "list[float]"; }
const char* type_name(const RopeKind*) { return "str"; }
const char* type_name(const AttentionKind*) { return "str"; }
const char* type_name(const RouterKind*) { return "str"; }
const char* type_name(const DType*) { return "str"; }

// A ModelConfig from a dict of config.h's field names (absent or None: the field's default);
// std::invalid_argument on an unknown key or a value of the wrong type. Not validated.
ModelConfig config_from_dict(const py::dict& d) {
  ModelConfig c;
  size_t known = 0;
#define R1LITE_READ_FIELD(name, type, fallback, meaning)                  \
  if (d.contains(#name)) {                                                \
    ++known;                                                              \
    if (!d[#name].is_none()) read_field(#name, d[#name], c.name);         \
  }
  R1LITE_CONFIG_FIELDS(R1LITE_READ_FIELD)
#undef R1LITE_READ_FIELD
  if (known != d.size()) {  // name the key that is not a field
    for (const auto& item : d) {
      const auto key = py::str(item.first).cast<std::string>();
      bool found = false;
#define R1LITE_IS_FIELD(name, type, fallback, meaning) found = found || key == #name;
      R1LITE_CONFIG_FIELDS(R1LITE_IS_FIELD)
#undef R1LITE_IS_FIELD
      if (!found) throw std::invalid_argument("config has an unknown key '" + key + "'");
    }
  }
  return c;
}

py::dict config_to_dict(const ModelConfig& c) {
  py::dict d;
#define R1LITE_WRITE_FIELD(name, type, fallback, meaning) d[#name] = field_value(c.name);
  R1LITE_CONFIG_FIELDS(R1LITE_WRITE_FIELD)
#undef R1LITE_WRITE_FIELD
  return d;
}

py::list config_fields() {
  py::list out;
  const ModelConfig defaults;
#define R1LITE_DESCRIBE_FIELD(name, type, fallback, meaning) \
  out.append(py::make_tuple(#name, type_name(&defaults.name), field_value(defaults.name), meaning));
  R1LITE_CONFIG_FIELDS(R1LITE_DESCRIBE_FIELD)
#undef R1LITE_DESCRIBE_FIELD
  return out;
}

ModelConfig checked_config(const py::dict& d) {
  ModelConfig c = config_from_dict(d);
  c.validate();
  return c;
}

// The Python-facing model: a backend (the CPU's Model or the GPU's DeviceModel) plus the arrays
// its weights point into, and a lock so that calls from several Python threads run one after
// another.
class PyModel {
 public:
  // make(views) builds the backend from the tensors as views of the given arrays.
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
  virtual ~PyModel() = default;

  // fn(backend), under the lock and without the GIL.
  template <class Fn>
  auto locked(Fn fn) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mu_);
    return fn(*model_);
  }

  py::array_t<float> forward(const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& tokens,
                             bool all_logits) {
    const int64_t n = token_count(tokens);
    const int64_t vocab = model_->config().vocab_size;
    py::array_t<float> out(all_logits ? std::vector<py::ssize_t>{py::ssize_t(n), py::ssize_t(vocab)}
                                      : std::vector<py::ssize_t>{py::ssize_t(vocab)});
    const int32_t* tok = tokens.data();
    float* dst = out.mutable_data();
    locked([&](Backend& m) { m.forward(tok, n, all_logits, dst); });
    return out;
  }

  // segments: a list of (sequence id, 1-D int32 tokens[, all positions]); logits of each
  // segment's last token, or of all its tokens when its third item is true: [rows, V] packed in
  // segment order (one row per segment when none asks for all).
  py::array_t<float> forward_batch(const py::list& segments) {
    std::vector<int64_t> seqs, lens;
    std::vector<uint8_t> all;
    std::vector<int32_t> tokens;
    py::ssize_t rows = 0;
    for (const auto& item : segments) {
      const auto seg = item.cast<py::tuple>();
      if (seg.size() != 2 && seg.size() != 3)
        throw std::invalid_argument("a segment is (sequence id, tokens[, all positions])");
      const auto ids = seg[1].cast<py::array_t<int32_t, py::array::c_style | py::array::forcecast>>();
      if (ids.ndim() != 1) throw std::invalid_argument("segment tokens must be a 1-D array");
      seqs.push_back(seg[0].cast<int64_t>());
      lens.push_back(ids.shape(0));
      all.push_back(seg.size() == 3 && seg[2].cast<bool>() ? 1 : 0);
      rows += all.back() ? ids.shape(0) : 1;
      tokens.insert(tokens.end(), ids.data(), ids.data() + ids.shape(0));
    }
    const auto vocab = py::ssize_t(model_->config().vocab_size);
    py::array_t<float> out({rows, vocab});
    float* dst = out.mutable_data();
    locked([&](Backend& m) {
      m.forward_batch_rows(tokens.data(), seqs.data(), lens.data(), all.data(), int64_t(seqs.size()), dst);
    });
    return out;
  }

  // The hidden states [rows, D] of the last forward()'s rows (Backend::last_hidden).
  py::array_t<float> last_hidden() {
    const auto D = py::ssize_t(model_->config().hidden_size);
    py::array_t<float> out({py::ssize_t(model_->hidden_rows()), D});
    float* dst = out.mutable_data();
    locked([&](Backend& m) { m.last_hidden(dst); });
    return out;
  }

  // tokens [n] and hidden [n, D] -> MTP logits [n, V] (Backend::forward_mtp).
  py::array_t<float> forward_mtp(const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& tokens,
                                 const py::array_t<float, py::array::c_style | py::array::forcecast>& hidden,
                                 int64_t id) {
    const int64_t n = token_count(tokens);
    const int64_t D = model_->config().hidden_size;
    if (hidden.ndim() != 2 || hidden.shape(0) != n || hidden.shape(1) != D)
      throw std::invalid_argument("forward_mtp: hidden must be [" + std::to_string(n) + ", " +
                                  std::to_string(D) + "] (one hidden state per token)");
    py::array_t<float> out({py::ssize_t(n), py::ssize_t(model_->config().vocab_size)});
    const int32_t* tok = tokens.data();
    const float* h = hidden.data();
    float* dst = out.mutable_data();
    locked([&](Backend& m) { m.forward_mtp(id, tok, h, n, dst); });
    return out;
  }

  Backend& backend() { return *model_; }
  static int64_t token_count(const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& tokens) {
    if (tokens.ndim() != 1) throw std::invalid_argument("tokens must be a 1-D array");
    if (tokens.shape(0) == 0) throw std::invalid_argument("tokens is empty");
    return tokens.shape(0);
  }

 private:
  std::unique_ptr<Backend> model_;
  std::vector<py::object> keep_alive_;
  std::mutex mu_;
};

void def_model(py::module_& m) {
  py::class_<PyModel> cls(m, "Model", "A model on the CPU (the base of every backend's model).");
  cls.def(py::init([](const py::dict& config, const py::dict& tensors, int threads) {
            return std::make_unique<PyModel>(tensors, [&](const std::map<std::string, Tensor>& views) {
              return std::make_unique<Model>(config_from_dict(config), views, threads);
            });
          }),
          py::arg("config"), py::arg("tensors"), py::arg("threads"))
      .def("forward", &PyModel::forward, py::arg("tokens"), py::arg("all_logits"),
           "Feed tokens after the cached ones; logits of every position or of the last.")
      .def("reset", [](PyModel& p) { p.locked([](Backend& b) { b.reset(); }); }, "Empty the KV cache.")
      .def("forward_batch", &PyModel::forward_batch, py::arg("segments"),
           "Tokens of several sequences [(id, tokens[, all positions]), ...] in one pass; logits of "
           "each last token (of every token of the segments asking for all positions), packed.")
      .def("open_sequence", [](PyModel& p) { return p.locked([](Backend& b) { return b.open_sequence(); }); },
           "A new sequence with its own cache: its id.")
      .def("close_sequence", [](PyModel& p, int64_t id) { p.locked([id](Backend& b) { b.close_sequence(id); }); },
           py::arg("id"))
      .def("sequence_length",
           [](PyModel& p, int64_t id) { return p.locked([id](Backend& b) { return b.sequence_length(id); }); },
           py::arg("id"))
      .def("truncate", [](PyModel& p, int64_t n) { p.locked([n](Backend& b) { b.truncate_sequence(0, n); }); },
           py::arg("n"), "Keep the first n cached positions (sequence 0); drop the rest.")
      .def("truncate_sequence",
           [](PyModel& p, int64_t id, int64_t n) { p.locked([=](Backend& b) { b.truncate_sequence(id, n); }); },
           py::arg("id"), py::arg("n"), "Keep the first n cached positions of sequence id.")
      .def("fork_sequence",
           [](PyModel& p, int64_t id, int64_t n) { return p.locked([=](Backend& b) { return b.fork_sequence(id, n); }); },
           py::arg("id"), py::arg("n"), "A new sequence holding a copy of sequence id's first n positions.")
      .def("last_hidden", &PyModel::last_hidden,
           "Hidden states [rows, D] (after the final norm) of the rows the last forward() fed.")
      .def("forward_mtp", &PyModel::forward_mtp, py::arg("tokens"), py::arg("hidden"), py::arg("id") = 0,
           "DeepSeek's MTP module over the next positions of sequence id's cache: tokens t_{j+1} [n] "
           "and hidden states h_j [n, D]; logits [n, V] predicting t_{j+2}.")
      .def_property_readonly("mtp_length", [](PyModel& p) { return p.locked([](Backend& b) { return b.mtp_length(0); }); })
      .def("sequence_mtp_length",
           [](PyModel& p, int64_t id) { return p.locked([id](Backend& b) { return b.mtp_length(id); }); },
           py::arg("id"), "Positions the MTP module's cache of sequence id holds.")
      .def("record_activations", [](PyModel& p, bool on) { p.locked([on](Backend& b) { b.record_activations(on); }); },
           py::arg("on"),
           "Start (clearing what was recorded) or stop recording every weight matrix's squared inputs.")
      .def("activation_stats",
           [](PyModel& p) {
             const auto stats = p.locked([](Backend& b) { return b.activation_stats(); });
             py::dict out;
             for (const auto& [name, s] : stats) {
               py::array_t<double> sum2(std::vector<py::ssize_t>{py::ssize_t(s.groups), py::ssize_t(s.cols)});
               std::copy(s.sum2.begin(), s.sum2.end(), sum2.mutable_data());
               out[py::str(name)] = py::make_tuple(s.groups == 1 ? sum2.attr("reshape")(s.cols) : py::object(sum2),
                                                   s.count);
             }
             return out;
           },
           "{r1lite tensor name: (sum of squared inputs per column [cols] or [groups, cols], input rows)}.")
      .def_property_readonly("n_past", [](PyModel& p) { return p.backend().n_past(); })
      .def_property_readonly("cache_bytes", [](PyModel& p) { return p.backend().cache_bytes(); })
      .def_property_readonly("cache_bytes_per_token", [](PyModel& p) { return p.backend().cache_bytes_per_token(); })
      .def_property_readonly("threads", [](PyModel& p) { return p.backend().threads(); })
      .def_property_readonly("context", [](PyModel& p) { return p.backend().config().context; });
}

py::array_t<float> matmul_for_test(const py::array_t<float, py::array::c_style | py::array::forcecast>& x,
                                   const py::array& w, const std::string& fmt, const std::string& isa,
                                   const py::object& scales) {
  if (x.ndim() != 2 || w.ndim() != 2) throw std::invalid_argument("x and w must be 2-D");
  Tensor wt = tensor_from_array("w", w, fmt, scales);
  const FormatInfo& f = format_info(wt.dtype);
  if (f.layout == Layout::Blocks) {  // bytes [rows, row bytes]: logical shape from x
    if (x.shape(1) % f.block != 0 || wt.shape[1] != row_bytes(wt.dtype, x.shape(1)))
      throw std::invalid_argument(std::string(f.name) + " blocks do not fit the inner size");
    wt.shape = {wt.shape[0], int64_t(x.shape(1))};
  } else if (has_scale_plane(wt.dtype)) {  // logical shape from the activations' inner size
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
// The GPU's model: the Backend methods of Model, plus what only a device has.
class PyDeviceModel : public PyModel {
 public:
  using PyModel::PyModel;
  // fn(device model), under the lock and without the GIL.
  template <class Fn>
  auto on_device(Fn fn) {
    return locked([&](Backend& b) { return fn(static_cast<DeviceModel&>(b)); });
  }
};

void def_device_model(py::module_& m) {
  using P = PyDeviceModel;
  py::class_<P, PyModel> cls(m, "DeviceModel");
  cls.def(py::init([](const py::dict& config, const py::dict& tensors, int device) {
            return std::make_unique<P>(tensors, [&](const std::map<std::string, Tensor>& views) {
              return std::make_unique<DeviceModel>(config_from_dict(config), views, device);
            });
          }),
          py::arg("config"), py::arg("tensors"), py::arg("device") = 0,
          "Upload the weights to CUDA device `device` and run the forward pass there.");
  cls.def("forward_argmax",
          [](P& p, const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& tokens) {
            const int64_t n = P::token_count(tokens);
            const int32_t* ids = tokens.data();
            return p.on_device([&](DeviceModel& dm) { return dm.forward_argmax(ids, n); });
          },
          py::arg("tokens"), "Feed tokens; the argmax of the last logits, computed on the device.")
      .def("set_graphs", [](P& p, bool on) { p.on_device([on](DeviceModel& dm) { dm.set_graphs(on); }); },
           py::arg("on"), "Replay decode steps as a captured CUDA graph (default on).")
      .def("copy_bandwidth",
           [](P& p, int64_t bytes, int repeats) {
             return p.on_device([&](DeviceModel& dm) { return dm.copy_bandwidth(bytes, repeats); });
           },
           py::arg("bytes"), py::arg("repeats") = 10,
           "Best device-to-device copy rate over `bytes`, bytes read + written per second.")
      .def_property_readonly("device_name", [](P& p) { return p.on_device([](DeviceModel& dm) { return dm.device_name(); }); })
      .def_property_readonly("weight_bytes", [](P& p) { return p.on_device([](DeviceModel& dm) { return dm.weight_bytes(); }); });
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

  def_model(m);
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
    d["avx512_vbmi"] = f.avx512_vbmi;
    d["amx_int8"] = f.amx_int8;
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
         const std::string& isa, int64_t dim, const std::string& fmt) {
        if (rows.ndim() != 2 || p.ndim() != 2 || p.shape(1) != rows.shape(0))
          throw std::invalid_argument("need p [heads, count] and rows [count, width]");
        const int64_t count = rows.shape(0), width = rows.shape(1);
        if (dim < 0) dim = width;
        if (dim > width) throw std::invalid_argument("dim exceeds the rows' width");
        // the rows stored in one page of a real cache, then the kernel reads them from there
        if (count > KVCache::kPagePositions) throw std::invalid_argument("at most one page of rows");
        KVCache cache(KvLayout{1, 1, width, 0, cache_format(fmt)}, count);
        cache.reserve(count);
        for (int64_t t = 0; t < count; ++t) cache.store_key(0, 0, t, rows.data() + t * width);
        const StoredRows stored = cache.keys(0, 0, 0);
        const int64_t heads = p.shape(0);
        py::array_t<float> out({py::ssize_t(heads), py::ssize_t(dim)});
        std::fill(out.mutable_data(), out.mutable_data() + heads * dim, 0.f);
        weighted_sum_with_isa(isa_from_name(isa), p.data(), p.shape(1), heads, stored, count, dim,
                              out.mutable_data(), dim);
        return out;
      },
      py::arg("p"), py::arg("rows"), py::arg("isa"), py::arg("dim") = -1, py::arg("fmt") = "f32",
      "p · rows[:, :dim] for p [heads, count] with one ISA's kernel, the rows stored in cache "
      "format fmt first (for tests).");
  m.def(
      "encode_row",
      [](const py::array_t<float, py::array::c_style | py::array::forcecast>& x, const std::string& fmt) {
        if (x.ndim() != 1) throw std::invalid_argument("x must be 1-D");
        const KvLayout layout{1, 1, x.shape(0), 0, cache_format(fmt)};
        py::array_t<uint8_t> data(layout.row_bytes(x.shape(0)));
        py::array_t<uint16_t> scales(layout.scale_bytes(x.shape(0)) / 2);
        encode_row(layout.format, x.data(), x.shape(0), data.mutable_data(), scales.mutable_data());
        return py::make_tuple(data, scales);
      },
      py::arg("x"), py::arg("fmt"),
      "A row as the KV cache stores it in fmt: (bytes, f16 block scales: q8_0 only) (for tests).");
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
      "normalized_config",
      [](const py::dict& config) { return config_to_dict(checked_config(config)); },
      py::arg("config"),
      "The config with every field (absent ones at their defaults), checked; ValueError naming the "
      "first unknown key, wrong type or bad value.");
  m.def("config_fields", &config_fields,
        "The config's fields: (name, type, default, meaning) each, in the core's order.");
  m.def(
      "tensor_specs",
      [](const py::dict& config) {
        py::list out;
        for (const TensorSpec& t : tensor_specs(checked_config(config)))
          out.append(py::make_tuple(t.name, py::tuple(py::cast(t.shape)),
                                    t.kind == WeightKind::F32 ? "f32" : "matrix"));
        return out;
      },
      py::arg("config"),
      "Every tensor the config calls for: (name, shape, kind) each, kind 'matrix' (any format) or "
      "'f32' (norms, biases, the router).");
  m.def(
      "config_facts",
      [](const py::dict& config) {
        const ModelConfig c = checked_config(config);
        const KvLayout kv = KvLayout::for_model(c);
        py::dict d;
        d["rope_inv_freq"] = c.rope_inv_freq();
        d["cache_values_per_token_per_layer"] = kv.heads * (kv.key_dim + kv.value_dim);
        d["cache_bytes_per_token"] = kv.bytes_per_position();  // in the config's kv_cache format
        return d;
      },
      py::arg("config"), "What the core derives from a config: rope frequencies, cache size.");
  m.def("weight_formats", [] {
    py::list out;
    for (const FormatInfo& f : kFormats) {
      py::dict d;
      d["name"] = f.name;
      d["gguf_name"] = f.gguf_name ? py::object(py::str(f.gguf_name)) : py::object(py::none());
      d["layout"] = f.layout == Layout::Float ? "float" : f.layout == Layout::Planar ? "planar" : "blocks";
      d["block"] = f.block;
      d["block_bytes"] = f.block_bytes;
      d["bits_per_weight"] = bits_per_weight(f.type);
      out.append(d);
    }
    return out;
  }, "The weight format table (core/formats.h): name, GGUF type name, layout, block, bytes, bits.");
  m.def("dequantize_blocks", [](const std::string& fmt, const py::array_t<uint8_t, py::array::c_style>& raw) {
    DType t;
    if (!dtype_from_name(fmt.c_str(), &t) || !is_block_format(t))
      throw std::invalid_argument("not a block format: '" + fmt + "'");
    const FormatInfo& f = format_info(t);
    if (raw.size() % f.block_bytes != 0)
      throw std::invalid_argument(std::to_string(raw.size()) + " bytes are not whole " + fmt + " blocks");
    const int64_t blocks = raw.size() / f.block_bytes;
    py::array_t<float> out(blocks * f.block);
    f.blocks_to_f32(raw.data(), out.mutable_data(), blocks);
    return out;
  }, py::arg("fmt"), py::arg("raw"), "Blocks of a GGUF format as f32 by the scalar reference (for tests).");
  m.def("iquant_grid", [](const std::string& fmt) {
    const uint64_t* grid = fmt == "iq2_xxs" ? kIq2xxsGrid : fmt == "iq2_xs" ? kIq2xsGrid
                         : fmt == "iq2_s" ? kIq2sGrid : nullptr;
    if (!grid) throw std::invalid_argument("no i-quant grid for format '" + fmt + "'");
    const int64_t n = fmt == "iq2_xxs" ? 256 : fmt == "iq2_xs" ? 512 : 1024;
    py::array_t<uint8_t> out({n, int64_t{8}});
    for (int64_t i = 0; i < n; ++i)
      for (int j = 0; j < 8; ++j) out.mutable_at(i, j) = uint8_t(grid[i] >> (8 * j));
    return out;
  }, py::arg("fmt"), "An i-quant format's codebook (core/iquant_tables.cpp): uint8 [entries, 8], "
     "the magnitudes of each group of 8 (for the Python quantizers).");
  m.def("isa_supported", [](const std::string& name) { return isa_supported(isa_from_name(name)); });
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("set_active_isa", [](const std::string& name) { set_active_isa(isa_from_name(name)); });
  m.def("matmul", &matmul_for_test, py::arg("x"), py::arg("w"), py::arg("fmt"), py::arg("isa"),
        py::arg("scales") = py::none(),
        "x·wᵀ with one ISA's kernel on one thread (for kernel tests).");
  m.def("attention_splits", &attention_splits, py::arg("positions"), py::arg("units"), py::arg("threads"),
        "Position ranges one token's attention is cut into (flash-decoding split; for tests and bench).");
}
