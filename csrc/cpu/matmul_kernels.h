// Matmul kernels, one set per instruction set. This header is included by the per-ISA files,
// which are compiled with wider instruction flags than the rest of the library: it must declare
// only plain functions, never define inline code or templates (the linker could otherwise keep an
// AVX-512 copy of a shared function and run it on a CPU without AVX-512).
#pragma once
#include <cstdint>

namespace r1lite {

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

extern const MatmulKernels kMatmulScalar;
extern const MatmulKernels kMatmulAvx2;    // x86-64 builds only
extern const MatmulKernels kMatmulAvx512;  // x86-64 builds only

}  // namespace r1lite
