// What the CUDA kernels share: weight descriptors, the paged cache's layout, element access for
// every weight format, and warp / block reductions.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"
#include "model/kv_layout.h"

namespace r1lite::cuda {

// A weight matrix in device memory, in the same formats and planes as on the host (dtype.h):
// float formats are rows of `cols` values; q8_0 / q4_0 have a quant plane (row_bytes per row)
// and f16 scales [rows, blocks].
struct DevMatrix {
  const void* data = nullptr;
  const uint16_t* scales = nullptr;
  int32_t dtype = 0;  // DType
  int64_t rows = 0, cols = 0, row_bytes = 0, blocks = 0;
};

// One matmul or a batch of equally shaped ones (per-head slices, experts). Group g multiplies
// its rows of x by mats[g]ᵀ: y[r*ldy + g*y_group + o] = Σ_k x[r*ldx + g*x_group + k] · W_g[o][k]
// for o < out, with r over [row_offsets[g], row_offsets[g+1]) or over [0, n) when row_offsets is
// null. A group with no rows reads no weights (experts nobody chose).
struct MatmulProblem {
  const DevMatrix* mats = nullptr;   // device array [groups]
  int64_t groups = 1;
  const int32_t* row_offsets = nullptr;  // device [groups + 1], or null
  int64_t n = 0;                     // rows of x
  int64_t max_group_rows = 0;        // most rows one group can have (n without row_offsets)
  const float* x = nullptr;
  int64_t ldx = 0, x_group = 0;
  float* y = nullptr;
  int64_t ldy = 0, y_group = 0;
  int32_t dtype = 0;                 // shared by every group
  int64_t out = 0, in = 0;
};

// Activations quantized per 32-block as the CPU's quantized kernels take them (matmul.h):
// row q = r*qgroups + g holds the x slice group g reads (qgroups = groups when groups read
// different slices of a row, else 1).
struct QuantizedActivations {
  int8_t* q = nullptr;   // [rows, blocks*32]
  float* d = nullptr;    // [rows, blocks]
  int32_t* s = nullptr;  // [rows, blocks]: sums of each block's quants
};

// The device twin of KVCache: pages laid out as kv_layout.h says, found through a page table in
// device memory so that a captured graph sees pages added later.
struct CacheView {
  float* const* pages = nullptr;
  KvLayout layout;  // f32 on the device

  __device__ float* key(int64_t layer, int64_t head, int64_t pos) const {
    return row(pos, layout.key_head_offset(layer, head), layout.key_dim);
  }
  __device__ float* value(int64_t layer, int64_t head, int64_t pos) const {
    return row(pos, layout.value_head_offset(layer, head), layout.value_dim);
  }
  __device__ float* row(int64_t pos, int64_t head_offset, int64_t dim) const {
    char* page = reinterpret_cast<char*>(pages[pos / KvLayout::kPagePositions]);
    return reinterpret_cast<float*>(page + head_offset + (pos % KvLayout::kPagePositions) * layout.row_bytes(dim));
  }
};

__device__ inline float f16_bits_to_float(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}

__device__ inline float bf16_bits_to_float(uint16_t bits) {
  return __uint_as_float(uint32_t(bits) << 16);
}

// Element i of a row-major float-format buffer.
template <int kFormat>
__device__ inline float float_weight(const void* data, int64_t i) {
  if constexpr (kFormat == int(DType::F32)) return static_cast<const float*>(data)[i];
  if constexpr (kFormat == int(DType::BF16)) return bf16_bits_to_float(static_cast<const uint16_t*>(data)[i]);
  return f16_bits_to_float(static_cast<const uint16_t*>(data)[i]);
}

// Element (row, k) of a matrix of any format (embedding lookup; not a hot path).
__device__ inline float weight_value(const DevMatrix& m, int64_t row, int64_t k) {
  switch (m.dtype) {
    case int(DType::F32): return float_weight<int(DType::F32)>(m.data, row * m.cols + k);
    case int(DType::BF16): return float_weight<int(DType::BF16)>(m.data, row * m.cols + k);
    case int(DType::F16): return float_weight<int(DType::F16)>(m.data, row * m.cols + k);
    default: break;
  }
  const auto* plane = static_cast<const uint8_t*>(m.data) + row * m.row_bytes;
  const float scale = f16_bits_to_float(m.scales[row * m.blocks + k / 32]);
  const int64_t b = k / 32, i = k % 32;
  if (m.dtype == int(DType::Q8_0)) return float(int8_t(plane[k])) * scale;
  const uint8_t byte = plane[b * 16 + i % 16];  // q4_0: element i low nibble, i + 16 high
  return float(int(i < 16 ? byte & 0x0f : byte >> 4) - 8) * scale;
}

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ inline int warp_sum_int(int v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over a block of at most 1024 threads (a multiple of 32); every thread gets the result.
// `scratch` holds 32 floats of shared memory.
__device__ inline float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by an earlier call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.f;
  return warp_sum(v);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace r1lite::cuda
