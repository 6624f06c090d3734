#include "cpu/matmul.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>
#include <stdexcept>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/blocks.h"
#include "core/formats.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {

static const MatmulKernels& kernels_for(Isa isa) {
  if (!isa_supported(isa))
    throw std::invalid_argument(std::string("this CPU does not support ") + isa_name(isa));
#if R1LITE_HAVE_X86
  if (isa == Isa::Avx512) return kMatmulAvx512;
  if (isa == Isa::Avx2) return kMatmulAvx2;
#endif
  return kMatmulScalar;
}

static Isa initial_isa() {
  if (const char* env = std::getenv("R1LITE_ISA")) {
    for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
      if (!std::strcmp(env, isa_name(isa)) && isa_supported(isa)) return isa;
  }
  return best_isa();
}

static Isa g_isa = initial_isa();
static const MatmulKernels* g_kernels = &kernels_for(g_isa);

Isa active_isa() { return g_isa; }

void set_active_isa(Isa isa) {
  g_kernels = &kernels_for(isa);  // throws if unsupported
  g_isa = isa;
}

// The kernel of a block format for an ISA: its entry in that ISA's lists, or the scalar reference.
// An AVX-512 CPU runs the AVX2 kernel of a format its own lists leave out (none so far).
static BlockMatmulRowsFn find_in(const BlockKernel* list, DType t) {
  for (; list->rows; ++list)
    if (list->format == t) return list->rows;
  return nullptr;
}

static BlockMatmulRowsFn find_block_kernel(Isa isa, DType t) {
#if R1LITE_HAVE_X86
  const BlockKernel* const avx2[] = {kBlocks32Avx2, kKQuantsAvx2, kKQuantsLowAvx2, kIQuantsAvx2};
  const BlockKernel* const avx512[] = {kBlocks32Avx512, kKQuantsAvx512, kKQuantsLowAvx512, kIQuantsAvx512};
  if (isa == Isa::Avx512)
    for (const BlockKernel* list : avx512)
      if (BlockMatmulRowsFn k = find_in(list, t)) return k;
  if (isa != Isa::Scalar)
    for (const BlockKernel* list : avx2)
      if (BlockMatmulRowsFn k = find_in(list, t)) return k;
#else
  (void)isa;
#endif
  return block_kernel_reference(t);
}

static BlockMatmulRowsFn block_kernel(Isa isa, DType t) {
  static const auto table = [] {
    std::vector<BlockMatmulRowsFn> k(size_t(3 * kNumDTypes));
    for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
      for (int f = 0; f < kNumDTypes; ++f) k[size_t(int(i) * kNumDTypes + f)] = find_block_kernel(i, DType(f));
    return k;
  }();
  return table[size_t(int(isa) * kNumDTypes + int(t))];
}

static WeightedSumFn weighted_sum_kernel(const MatmulKernels& k, DType t) {
  switch (t) {
    case DType::F32: return k.weighted_sum_f32;
    case DType::BF16: return k.weighted_sum_bf16;
    case DType::F16: return k.weighted_sum_f16;
    case DType::Q8_0: return k.weighted_sum_q8_0;
    default: throw std::invalid_argument("attention: not a cache format");
  }
}

void weighted_sum_rows(const float* p, int64_t ldp, int64_t heads, const StoredRows& rows,
                       int64_t count, int64_t dim, float* out, int64_t ldo) {
  weighted_sum_with_isa(g_isa, p, ldp, heads, rows, count, dim, out, ldo);
}

void weighted_sum_with_isa(Isa isa, const float* p, int64_t ldp, int64_t heads, const StoredRows& rows,
                           int64_t count, int64_t dim, float* out, int64_t ldo) {
  weighted_sum_kernel(kernels_for(isa), rows.format)(p, ldp, heads, rows.data, rows.scales, count, dim,
                                                      rows.ld, out, ldo);
}

void QueryRows::prepare(DType format, const float* x, int64_t n, int64_t ldx, int64_t dim) {
  x_ = x, n_ = n, ldx_ = ldx, dim_ = dim;
  if (format != DType::Q8_0) return;
  const int64_t blocks = (dim + kQuantBlock - 1) / kQuantBlock;
  xq_.resize(size_t(n * blocks * kQuantBlock));
  xd_.resize(size_t(n * blocks));
  xs_.resize(size_t(n * blocks));
  for (int64_t i = 0; i < n; ++i)
    quantize_activations(x + i * ldx, 1, dim, &xq_[size_t(i * blocks * kQuantBlock)],
                         &xd_[size_t(i * blocks)], &xs_[size_t(i * blocks)]);
}

static MatmulRowsFn float_kernel(const MatmulKernels& k, DType t) {
  switch (t) {
    case DType::F32: return k.f32;
    case DType::BF16: return k.bf16;
    case DType::F16: return k.f16;
    default: throw std::invalid_argument("matmul: not a float format");
  }
}

static QMatmulRowsFn quant_kernel(const MatmulKernels& k, DType t) {
  if (t == DType::Q8_0) return k.q8_0;
  if (t == DType::Q4_0) return k.q4_0;
  throw std::invalid_argument("matmul: not a quantized format");
}

void dot_rows(const QueryRows& q, const StoredRows& rows, int64_t count, float* y, int64_t ldy) {
  if (rows.format == DType::Q8_0) {
    const int64_t blocks = (q.dim_ + kQuantBlock - 1) / kQuantBlock;
    quant_kernel(*g_kernels, rows.format)(q.xq_.data(), q.xd_.data(), q.xs_.data(), q.n_, blocks,
                                          rows.data, rows.scales, 0, count, y, ldy);
  } else {
    float_kernel(*g_kernels, rows.format)(q.x_, q.n_, q.ldx_, rows.data, q.dim_, 0, count, y, ldy);
  }
}

// Round to nearest, ties to even (as llama.cpp's SIMD activation quantizers do), for |v| < 2^22:
// adding and removing 1.5·2^23 leaves the rounded value. Plain adds, so the loop vectorizes
// (lround is a library call per value: 6% of a SmolLM2 prefill).
static inline int32_t round_to_int(float v) {
  const float magic = 12582912.f;
  return int32_t((v + magic) - magic);
}

// One block of 32 values with SSE2 (the x86-64 baseline): the plain loop below ran at ~0.4
// values/ns, and a decode step quantizes ~14K values per layer on one thread. Max and rounding
// are exact, so this is bit for bit the plain loop's result.
#if defined(__SSE2__)
static bool quantize_full_block(const float* src, int8_t* dst, float* d_out, int32_t* sum_out) {
  __m128 v[kQuantBlock / 4];
  const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
  __m128 amax4 = _mm_setzero_ps();
  for (int k = 0; k < kQuantBlock / 4; ++k) {
    v[k] = _mm_loadu_ps(src + 4 * k);
    amax4 = _mm_max_ps(amax4, _mm_and_ps(v[k], abs_mask));
  }
  amax4 = _mm_max_ps(amax4, _mm_shuffle_ps(amax4, amax4, _MM_SHUFFLE(1, 0, 3, 2)));
  amax4 = _mm_max_ps(amax4, _mm_shuffle_ps(amax4, amax4, _MM_SHUFFLE(2, 3, 0, 1)));
  const float amax = _mm_cvtss_f32(amax4);
  const float d = amax / 127.f, id = d > 0.f ? 1.f / d : 0.f;
  const __m128 idv = _mm_set1_ps(id), magic = _mm_set1_ps(12582912.f);  // as round_to_int
  __m128i q[kQuantBlock / 4], sum = _mm_setzero_si128();
  for (int k = 0; k < kQuantBlock / 4; ++k) {
    q[k] = _mm_cvttps_epi32(_mm_sub_ps(_mm_add_ps(_mm_mul_ps(v[k], idv), magic), magic));
    sum = _mm_add_epi32(sum, q[k]);
  }
  for (int k = 0; k < kQuantBlock / 4; k += 4)  // |q| <= 127: the saturating packs only narrow
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 4 * k),
                     _mm_packs_epi16(_mm_packs_epi32(q[k], q[k + 1]), _mm_packs_epi32(q[k + 2], q[k + 3])));
  sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, _MM_SHUFFLE(1, 0, 3, 2)));
  sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, _MM_SHUFFLE(2, 3, 0, 1)));
  *d_out = d;
  *sum_out = _mm_cvtsi128_si32(sum);
  return true;
}
#else
static bool quantize_full_block(const float*, int8_t*, float*, int32_t*) { return false; }
#endif

void quantize_activations(const float* x, int64_t n, int64_t in, int8_t* xq, float* xd, int32_t* xs) {
  const int64_t blocks = (in + kQuantBlock - 1) / kQuantBlock;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t b = 0; b < blocks; ++b) {
      const float* src = x + t * in + b * kQuantBlock;
      int8_t* dst = xq + (t * blocks + b) * kQuantBlock;
      const int64_t len = std::min(kQuantBlock, in - b * kQuantBlock);
      if (len == kQuantBlock && quantize_full_block(src, dst, &xd[t * blocks + b], &xs[t * blocks + b]))
        continue;
      float amax = 0.f;
      for (int64_t i = 0; i < len; ++i) amax = std::max(amax, std::fabs(src[i]));
      const float d = amax / 127.f, id = d > 0.f ? 1.f / d : 0.f;
      int32_t sum = 0;
      for (int64_t i = 0; i < kQuantBlock; ++i) {
        dst[i] = i < len ? int8_t(round_to_int(src[i] * id)) : int8_t(0);
        sum += dst[i];
      }
      xd[t * blocks + b] = d;
      xs[t * blocks + b] = sum;
    }
  }
}

void quantize_act_q8_32(const float* x, int64_t n, int64_t in, void* out) {
  auto* b = static_cast<ActQ8_32*>(out);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < in / 32; ++j, ++b) {
      float d;
      int32_t sum;
      quantize_activations(x + t * in + j * 32, 1, 32, b->qs, &d, &sum);
      b->d = d;
      b->sum = sum;
    }
}

void quantize_act_q8_k(const float* x, int64_t n, int64_t in, void* out) {
  auto* b = static_cast<ActQ8_K*>(out);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t j = 0; j < in / kQK; ++j, ++b) {
      const float* src = x + t * in + j * kQK;
      float amax = 0.f;
      for (int i = 0; i < kQK; ++i) amax = std::max(amax, std::fabs(src[i]));
      const float d = amax / 127.f, id = d > 0.f ? 1.f / d : 0.f;
      for (int i = 0; i < kQK; ++i) b->qs[i] = int8_t(round_to_int(src[i] * id));
      for (int g = 0; g < kQK / 16; ++g) {
        int sum = 0;
        for (int i = 0; i < 16; ++i) sum += b->qs[16 * g + i];
        b->bsums[g] = int16_t(sum);
      }
      b->d = d;
    }
  }
}

static void quantize_act(ActFormat fmt, const float* x, int64_t n, int64_t in, void* out) {
  if (fmt == ActFormat::Q8_32) quantize_act_q8_32(x, n, in, out);
  else quantize_act_q8_k(x, n, in, out);
}

KernelScratch::~KernelScratch() { std::free(data); }

uint8_t* KernelScratch::reserve(size_t n) {
  if (n > size) {
    const size_t bytes = (n + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    std::free(data);
    data = static_cast<uint8_t*>(p);
    size = bytes;
  }
  return data;
}

// Scratch for the quantized activations of one matmul (matmuls run one at a time per thread).
struct QuantScratch {
  std::vector<int8_t> xq;
  std::vector<float> xd;
  std::vector<int32_t> xs;
  void fill(ThreadPool* pool, const float* x, int64_t n, int64_t in) {
    const int64_t blocks = (in + kQuantBlock - 1) / kQuantBlock;
    xq.resize(size_t(n * blocks * kQuantBlock));
    xd.resize(size_t(n * blocks));
    xs.resize(size_t(n * blocks));
    auto part = [&](int64_t t0, int64_t t1) {
      quantize_activations(x + t0 * in, t1 - t0, in, &xq[size_t(t0 * blocks * kQuantBlock)],
                           &xd[size_t(t0 * blocks)], &xs[size_t(t0 * blocks)]);
    };
    if (pool) pool->parallel_for(n, 8, part); else part(0, n);
  }
  // Activation blocks (Q8_32 or Q8_K) for the GGUF block formats.
  std::vector<uint8_t> q8_32, q8_k;
  uint8_t* fill_blocks(ThreadPool* pool, ActFormat fmt, const float* x, int64_t n, int64_t in) {
    const int64_t bytes = act_row_bytes(fmt, in);
    std::vector<uint8_t>& buf = fmt == ActFormat::Q8_32 ? q8_32 : q8_k;
    buf.resize(size_t(n * bytes));
    uint8_t* out = buf.data();
    auto part = [&](int64_t t0, int64_t t1) { quantize_act(fmt, x + t0 * in, t1 - t0, in, out + t0 * bytes); };
    if (pool) pool->parallel_for(n, 8, part); else part(0, n);
    return out;
  }
};

// The weight's format fits its width: block formats need whole blocks per row.
static void check_block_width(const Tensor& w) {
  const FormatInfo& f = format_info(w.dtype);
  if (f.layout == Layout::Blocks && w.cols() % f.block != 0)
    throw std::invalid_argument(std::string("matmul: a ") + f.name + " row holds whole blocks of " +
                                std::to_string(f.block) + " values, not " + std::to_string(w.cols()));
}

// One input's activations in the forms its matrices' kernels take (quantized once for all of
// them): pointers into a QuantScratch, or x itself for the float kernels.
struct PreparedInput {
  const float* x = nullptr;
  const int8_t* xq = nullptr;
  const float* xd = nullptr;
  const int32_t* xs = nullptr;
  const uint8_t* x8_32 = nullptr;
  const uint8_t* x8_k = nullptr;
};

// x [n, in] prepared for the matrices ws (all of width in).
static PreparedInput prepare_input(ThreadPool& pool, QuantScratch& scratch, const float* x, int64_t n,
                                   int64_t in, const Tensor* const* ws, int count) {
  bool any_planar = false, any_q8_32 = false, any_q8_k = false;
  for (int j = 0; j < count; ++j) {
    if (ws[j]->cols() != in) throw std::invalid_argument("matmul_many: matrices differ in width");
    check_block_width(*ws[j]);
    const ActFormat act = format_info(ws[j]->dtype).act;
    any_planar |= act == ActFormat::Q8Planar;
    any_q8_32 |= act == ActFormat::Q8_32;
    any_q8_k |= act == ActFormat::Q8_K;
  }
  PreparedInput p;
  p.x = x;
  if (any_planar) {
    scratch.fill(&pool, x, n, in);
    p.xq = scratch.xq.data();
    p.xd = scratch.xd.data();
    p.xs = scratch.xs.data();
  }
  if (any_q8_32) p.x8_32 = scratch.fill_blocks(&pool, ActFormat::Q8_32, x, n, in);
  if (any_q8_k) p.x8_k = scratch.fill_blocks(&pool, ActFormat::Q8_K, x, n, in);
  return p;
}

// y_j = input_j·w_jᵀ for j < count in one parallel section (input_j = inputs[j], or inputs[0]
// for every j when shared). Each matrix in chunks of rows small enough to balance the threads,
// in multiples of 16 (the kernels' row block), counted from its own first row: the same chunks,
// and so the same rounding, as when it is multiplied alone.
static void run_matrices(ThreadPool& pool, int64_t n, const Tensor* const* ws, float* const* ys, int count,
                         const PreparedInput* inputs, bool shared) {
  struct Chunk { int j; int64_t r0, r1; };
  thread_local std::vector<Chunk> chunks;
  chunks.clear();
  for (int j = 0; j < count; ++j) {
    const int64_t rows = ws[j]->rows();
    int64_t grain = rows / (int64_t(pool.size()) * 4);
    grain = grain < 16 ? 16 : (grain + 15) / 16 * 16;
    for (int64_t r0 = 0; r0 < rows; r0 += grain) chunks.push_back({j, r0, std::min(rows, r0 + grain)});
  }
  const MatmulKernels& k = *g_kernels;
  const Isa isa = g_isa;
  const Chunk* list = chunks.data();
  pool.parallel_for(int64_t(chunks.size()), 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const Tensor& w = *ws[list[c].j];
      const PreparedInput& in = inputs[shared ? 0 : list[c].j];
      const int64_t cols = w.cols();
      float* y = ys[list[c].j];
      const FormatInfo& f = format_info(w.dtype);
      if (f.layout == Layout::Blocks)
        block_kernel(isa, w.dtype)(f.act == ActFormat::Q8_K ? in.x8_k : in.x8_32, act_row_bytes(f.act, cols), n,
                                   w.data, row_bytes(w.dtype, cols), cols / f.block, list[c].r0, list[c].r1,
                                   y, w.rows());
      else if (has_scale_plane(w.dtype))
        quant_kernel(k, w.dtype)(in.xq, in.xd, in.xs, n, (cols + kQuantBlock - 1) / kQuantBlock, w.data, w.scales,
                                 list[c].r0, list[c].r1, y, w.rows());
      else
        float_kernel(k, w.dtype)(in.x, n, cols, w.data, cols, list[c].r0, list[c].r1, y, w.rows());
    }
  });
}

void matmul_many(ThreadPool& pool, const float* x, int64_t n, const Tensor* const* ws,
                 float* const* ys, int count) {
  // Quantized once for every matrix. Pointers, not the thread_local itself: in a worker,
  // `scratch` would name the worker's copy.
  thread_local QuantScratch scratch;
  const PreparedInput input = prepare_input(pool, scratch, x, n, ws[0]->cols(), ws, count);
  run_matrices(pool, n, ws, ys, count, &input, true);
}

void matmul_each(ThreadPool& pool, const float* const* xs, int64_t n, const Tensor* const* ws,
                 float* const* ys, int count) {
  thread_local std::vector<QuantScratch> scratch;  // one per input, kept between calls
  if (scratch.size() < size_t(count)) scratch.resize(size_t(count));
  std::vector<PreparedInput> inputs(static_cast<size_t>(count));
  for (int j = 0; j < count; ++j)
    inputs[size_t(j)] = prepare_input(pool, scratch[size_t(j)], xs[j], n, ws[j]->cols(), ws + j, 1);
  run_matrices(pool, n, ws, ys, count, inputs.data(), false);
}

void matmul(ThreadPool& pool, const float* x, int64_t n, const Tensor& w, float* y) {
  const Tensor* ws[] = {&w};
  float* ys[] = {y};
  matmul_many(pool, x, n, ws, ys, 1);
}

// The product on the calling thread with one ISA's kernels.
static void matmul_serial(Isa isa, const float* x, int64_t n, const Tensor& w, float* y) {
  const MatmulKernels& k = kernels_for(isa);
  check_block_width(w);
  const FormatInfo& f = format_info(w.dtype);
  if (f.layout == Layout::Blocks) {
    thread_local QuantScratch scratch;
    const uint8_t* xa = scratch.fill_blocks(nullptr, f.act, x, n, w.cols());
    block_kernel(isa, w.dtype)(xa, act_row_bytes(f.act, w.cols()), n, w.data, row_bytes(w.dtype, w.cols()),
                               w.cols() / f.block, 0, w.rows(), y, w.rows());
    return;
  }
  if (has_scale_plane(w.dtype)) {
    thread_local QuantScratch scratch;
    scratch.fill(nullptr, x, n, w.cols());
    quant_kernel(k, w.dtype)(scratch.xq.data(), scratch.xd.data(), scratch.xs.data(), n,
                             (w.cols() + kQuantBlock - 1) / kQuantBlock, w.data, w.scales, 0,
                             w.rows(), y, w.rows());
    return;
  }
  float_kernel(k, w.dtype)(x, n, w.cols(), w.data, w.cols(), 0, w.rows(), y, w.rows());
}

void matmul_with_isa(Isa isa, const float* x, int64_t n, const Tensor& w, float* y) {
  matmul_serial(isa, x, n, w, y);
}

void matmul_heads(ThreadPool& pool, const float* x, int64_t n, int64_t ldx, int64_t x_head,
                  const Tensor& w, int64_t heads, float* y, int64_t ldy, int64_t y_head) {
  const Isa isa = g_isa;
  const int64_t in = w.cols(), out = w.rows() / heads;
  pool.parallel_for(heads, 1, [&](int64_t h0, int64_t h1) {
    thread_local std::vector<float> xh, yh;  // one head's inputs [n, in] and outputs [n, out]
    xh.resize(size_t(n * in));
    yh.resize(size_t(n * out));
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t i = 0; i < n; ++i)
        std::copy_n(x + i * ldx + h * x_head, in, &xh[size_t(i * in)]);
      matmul_serial(isa, xh.data(), n, w.rows_slice(h * out, out), yh.data());
      for (int64_t i = 0; i < n; ++i)
        std::copy_n(&yh[size_t(i * out)], out, y + i * ldy + h * y_head);
    }
  });
}

}  // namespace r1lite
