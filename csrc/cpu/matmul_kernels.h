// Matmul kernels, one set per instruction set. This header is included by the per-ISA files,
// which are compiled with wider instruction flags than the rest of the library: it must declare
// only plain functions, never define inline code or templates (the linker could otherwise keep an
// AVX-512 copy of a shared function and run it on a CPU without AVX-512).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace r1lite {

// Decode reads a matrix's rows one after another, and the rows of a matrix are consecutive in
// memory. Asking for the next row at the current offset asks only one row ahead: 360 bytes for a
// q4_1 row of 576 columns (the demo's), too few lines in flight to keep DRAM busy (measured on one
// thread: the demo's q4_1 [*, 576] matrices read at 5.7 GB/s, 9.9 with the stream 2-4 KB ahead
// asked for; the demo decoded ~1.25x faster). Decode tiles (one row) ask for the bytes
// kStreamAhead past those they read when rows are consecutive (weights; not a KV cache's rows,
// which keep asking for the next row); tiles of several rows (prefill: compute-bound, rows reread
// from cache) keep asking for the next tile's rows.
constexpr int64_t kStreamAhead = 4096;

// y[t*ldy + r] = sum_k x[t*ldx + k] * W[r][k]   for t in [0, n_tok), r in [r0, r1)
// W is row-major [rows, in] in the kernel's storage format (y = x·Wᵀ, as a PyTorch Linear).
typedef void (*MatmulRowsFn)(const float* x, int64_t n_tok, int64_t ldx, const void* w, int64_t in,
                             int64_t r0, int64_t r1, float* y, int64_t ldy);

// Block-quantized weights (q8_0 / q4_0, see core/dtype.h) times activations quantized the same
// way: xq int8 [n_tok, blocks*32] with one f32 scale per block xd [n_tok, blocks] and the sum of
// each block's quants xs [n_tok, blocks] (lets q4_0 kernels use the unsigned nibbles directly):
// y[t*ldy + r] = sum_b (sum_i Wq[r][b][i] * xq[t][b][i]) * (d_w[r][b] * xd[t][b])
// wq: the quant plane, row r at wq + r*row_bytes; wd: f16 scales [rows, blocks].
typedef void (*QMatmulRowsFn)(const int8_t* xq, const float* xd, const int32_t* xs, int64_t n_tok,
                              int64_t blocks,
                              const void* wq, const uint16_t* wd, int64_t r0, int64_t r1,
                              float* y, int64_t ldy);

// out[h*ldo + j] += sum_t p[h*ldp + t] * row_t[j] for h < heads, j < dim: attention's weighted
// sums of cached value rows for query heads that read the same rows (each row is read once).
// Rows are ld values apart in the kernel's storage format (f32, bf16, f16; q8_0: int8 quants
// with f16 scales [count][ld/32], row_t[j] = q * scale of its block; ld a multiple of 32).
typedef void (*WeightedSumFn)(const float* p, int64_t ldp, int64_t heads, const void* rows,
                              const uint16_t* scales, int64_t count, int64_t dim, int64_t ld,
                              float* out, int64_t ldo);

// GGUF's block formats (core/blocks.h) times activations in the format's activation blocks
// (format_info(format).act: ActQ8_32 or ActQ8_K rows, x_row_bytes apart), for t < n_tok and r in
// [r0, r1):
// y[t*ldy + r] = sum over the `blocks` blocks b of row r of  dot(W[r] block b, x_t block b)
// (a weight block and its activation block hold the same number of values). Row r of W starts at
// w + r * w_row_bytes.
typedef void (*BlockMatmulRowsFn)(const void* x, int64_t x_row_bytes, int64_t n_tok, const void* w,
                                  int64_t w_row_bytes, int64_t blocks, int64_t r0, int64_t r1,
                                  float* y, int64_t ldy);

// A thread's growing scratch buffer for the kernels (arranged activations, unpacked rows), 64-byte
// aligned (a 512-bit load across two cache lines costs two); its contents are not kept when it
// grows. Defined in portable code (cpu/matmul.cpp): the per-ISA files may not share inline code,
// nor instantiate std::vector (the linker could keep their AVX-512 copy for every caller).
struct KernelScratch {
  uint8_t* data = nullptr;
  size_t size = 0;
  ~KernelScratch();
  uint8_t* reserve(size_t n);  // data, holding at least n bytes
};

// A kernel for one block format; lists of them end with {DType::F32, nullptr}.
struct BlockKernel {
  DType format;
  BlockMatmulRowsFn rows;
};

struct MatmulKernels {
  MatmulRowsFn f32;
  MatmulRowsFn bf16;
  MatmulRowsFn f16;
  QMatmulRowsFn q8_0;
  QMatmulRowsFn q4_0;
  WeightedSumFn weighted_sum_f32;
  WeightedSumFn weighted_sum_bf16;
  WeightedSumFn weighted_sum_f16;
  WeightedSumFn weighted_sum_q8_0;
};

// The scalar reference of a block format: each weight row dequantized by the format table's
// reference, dotted in f32 with the activation blocks as f32.
BlockMatmulRowsFn block_kernel_reference(DType format);

// The SIMD kernels of the block formats, a list per group of formats and instruction set (the
// formats a list leaves out run the scalar reference).
extern const BlockKernel kBlocks32Avx2[];      // gguf_q8_0, gguf_q4_0, q4_1, q5_0, q5_1, iq4_nl
extern const BlockKernel kBlocks32Avx512[];
extern const BlockKernel kKQuantsAvx2[];       // q4_k, q5_k, q6_k
extern const BlockKernel kKQuantsAvx512[];
extern const BlockKernel kKQuantsLowAvx2[];    // q2_k, q3_k, iq4_xs
extern const BlockKernel kKQuantsLowAvx512[];
extern const BlockKernel kIQuantsAvx2[];       // iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m
extern const BlockKernel kIQuantsAvx512[];

extern const MatmulKernels kMatmulScalar;
extern const MatmulKernels kMatmulAvx2;    // x86-64 builds only
extern const MatmulKernels kMatmulAvx512;  // x86-64 builds only

}  // namespace r1lite
