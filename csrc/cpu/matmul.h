// y = x·Wᵀ for a weight of any storage format, split across the thread pool by output rows.
#pragma once
#include <cstdint>
#include <vector>

#include "core/cpu_features.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace r1lite {

// The instruction set the matmuls use; starts at the best the CPU has (or R1LITE_ISA from the
// environment: scalar | avx2 | avx512). Throws std::invalid_argument if the CPU lacks it.
Isa active_isa();
void set_active_isa(Isa isa);

// Rows of a KV cache (model/kv_layout.h) as attention reads them: `ld` values apart in `format`
// (f32, bf16, f16; q8_0: int8 quants, f16 scales [row][ld/32] beside them).
struct StoredRows {
  DType format = DType::F32;
  const void* data = nullptr;
  const uint16_t* scales = nullptr;
  int64_t ld = 0;
};

// Attention's queries prepared once for dot_rows against rows of one format (q8_0 rows take the
// queries quantized per 32-block, as the quantized matmuls do).
class QueryRows {
 public:
  // x [n, dim] at a stride of ldx.
  void prepare(DType format, const float* x, int64_t n, int64_t ldx, int64_t dim);

 private:
  friend void dot_rows(const QueryRows&, const StoredRows&, int64_t, float*, int64_t);
  const float* x_ = nullptr;
  int64_t n_ = 0, ldx_ = 0, dim_ = 0;
  std::vector<int8_t> xq_;
  std::vector<float> xd_;
  std::vector<int32_t> xs_;
};

// Attention's two products over one head's cache rows, with the active ISA's kernels, on the
// calling thread:
// y[i*ldy + t] = x_i · row_t for i < n, t < count (rows of the prepared queries' dim, stored
// dim apart: rows.ld == dim)
void dot_rows(const QueryRows& q, const StoredRows& rows, int64_t count, float* y, int64_t ldy);
// out[h*ldo + j] += sum_t p[h*ldp + t] * row_t[j] for h < heads, j < dim <= rows.ld: the query
// heads that share these value rows, which are read once.
void weighted_sum_rows(const float* p, int64_t ldp, int64_t heads, const StoredRows& rows,
                       int64_t count, int64_t dim, float* out, int64_t ldo);
// The weighted sum with a given ISA (for the kernel tests).
void weighted_sum_with_isa(Isa isa, const float* p, int64_t ldp, int64_t heads, const StoredRows& rows,
                           int64_t count, int64_t dim, float* out, int64_t ldo);

// x [n, in] f32 row-major, w [rows, in], y [n, rows].
void matmul(ThreadPool& pool, const float* x, int64_t n, const Tensor& w, float* y);
// y_j = x·w_jᵀ for `count` matrices of the same width (q/k/v, gate/up) in one parallel section,
// the activations quantized once; each y_j as matmul would give it.
void matmul_many(ThreadPool& pool, const float* x, int64_t n, const Tensor* const* ws,
                 float* const* ys, int count);
// y_j = x_j·w_jᵀ for `count` matrices, each with its own input x_j [n, w_j.cols()], in one
// parallel section (a token's experts' down projections); each y_j as matmul would give it.
void matmul_each(ThreadPool& pool, const float* const* xs, int64_t n, const Tensor* const* ws,
                 float* const* ys, int count);

// One matmul per head: for h < heads, with in = w.cols() and out = w.rows() / heads,
// y[i*ldy + h*y_head + r] = sum_k x[i*ldx + h*x_head + k] · w[h*out + r][k]   (i < n, r < out).
// MLA's absorbed attention multiplies each head's query and output by its own slice of kv_b.
void matmul_heads(ThreadPool& pool, const float* x, int64_t n, int64_t ldx, int64_t x_head,
                  const Tensor& w, int64_t heads, float* y, int64_t ldy, int64_t y_head);

// Activations in the q8 block format the quantized kernels take: per 32-block of each row of
// x [n, in], int8 quants xq [n, blocks*32] (zero-padded), f32 scales xd [n, blocks] and the
// quants' sums xs [n, blocks]; scale = max|x| / 127, q = round(x / scale), ties to even.
void quantize_activations(const float* x, int64_t n, int64_t in, int8_t* xq, float* xd, int32_t* xs);

// Activations in the block formats the GGUF formats' kernels take (core/blocks.h), x [n, in]
// with `in` a multiple of the block, rows act_row_bytes apart: ActQ8_32 (scale max|x| / 127, the
// quants' sum) and ActQ8_K (one scale per 256, sums per 16). Rounding as quantize_activations.
void quantize_act_q8_32(const float* x, int64_t n, int64_t in, void* out);
void quantize_act_q8_k(const float* x, int64_t n, int64_t in, void* out);

// The same product on one thread with the kernel of a given ISA (for the kernel tests).
void matmul_with_isa(Isa isa, const float* x, int64_t n, const Tensor& w, float* y);

}  // namespace r1lite
