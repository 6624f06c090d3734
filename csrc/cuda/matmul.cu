// Matmuls of every weight format (ARCH.md-independent: y = x·Wᵀ). Two kernels per format:
//   one-row (decode, ≤ kMaxDecodeRows rows per group): a warp per output row streams the row once
//   with 16-byte loads (a warp reads 1 KiB of q8_0 quants per step) and serves every x row;
//   tiled (prefill): 64 x rows × 64 outputs per block, 32 inner values (one quant block) per
//   step through shared memory, 4×4 outputs per thread.
// Quantized weights multiply int8 activations quantized per 32-block exactly as the CPU does
// (scale max|x|/127, round half to even): dot products are exact integers (dp4a) times the two
// scales, so CPU and GPU differ only in the order of float sums.
#include "cuda/cuda_check.h"
#include "cuda/kernels.cuh"

namespace r1lite::cuda {

namespace {

constexpr int kWarps = 8;          // one-row kernel: outputs (warps) per block
constexpr int kTile = 64;          // tiled kernel: x rows and outputs per block
constexpr int kTileThreads = 256;  // 16 × 16 threads, 4 × 4 outputs each

struct GroupRows {
  int64_t first, count;
};

__device__ inline GroupRows group_rows(const MatmulProblem& p, int64_t g) {
  if (!p.row_offsets) return {0, p.n};
  return {p.row_offsets[g], p.row_offsets[g + 1] - p.row_offsets[g]};
}

__device__ inline int64_t quant_groups(const MatmulProblem& p) { return p.x_group != 0 ? p.groups : 1; }

// The warp's per-lane partial sums of output o for each row of its group, reduced and stored.
__device__ inline void store_row_sums(const MatmulProblem& p, const GroupRows& rows, int64_t g,
                                      int64_t o, const float (&acc)[kMaxDecodeRows]) {
#pragma unroll
  for (int t = 0; t < kMaxDecodeRows; ++t) {
    if (t < rows.count) {
      const float sum = warp_sum(acc[t]);
      if (threadIdx.x % 32 == 0) p.y[(rows.first + t) * p.ldy + g * p.y_group + o] = sum;
    }
  }
}

// A tiled kernel thread's 4 rows x 4 outputs from (row0, o0), those inside the problem.
__device__ inline void store_tile(const MatmulProblem& p, const GroupRows& rows, int64_t g,
                                  int64_t row0, int64_t o0, const float (&acc)[4][4]) {
  for (int a = 0; a < 4; ++a)
    for (int c = 0; c < 4; ++c) {
      const int64_t row = row0 + a, o = o0 + c;
      if (row < rows.count && o < p.out) p.y[(rows.first + row) * p.ldy + g * p.y_group + o] = acc[a][c];
    }
}

// One warp per (quantized row, block): the CPU's quantize_activations on 32 values.
__global__ void quantize_kernel(MatmulProblem p, int64_t blocks, QuantizedActivations qa) {
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  const int64_t qg = quant_groups(p);
  if (warp >= p.n * qg * blocks) return;
  const int64_t qrow = warp / blocks, b = warp % blocks, r = qrow / qg, g = qrow % qg;
  const int64_t k = b * 32 + lane;
  const float v = k < p.in ? p.x[r * p.ldx + g * p.x_group + k] : 0.f;
  const float amax = warp_max(fabsf(v));
  const float d = amax / 127.f, id = d > 0.f ? 1.f / d : 0.f;
  const int q = k < p.in ? int(rintf(v * id)) : 0;
  qa.q[(qrow * blocks + b) * 32 + lane] = int8_t(q);
  const int sum = warp_sum_int(q);
  if (lane == 0) {
    qa.d[qrow * blocks + b] = d;
    qa.s[qrow * blocks + b] = sum;
  }
}

// The 32 quants of block b of a weight row as 8 words of 4 int8, in element order; q4_0's
// nibbles are unpacked to 0..15 (the -8 is applied through the activation sums).
template <int kFormat>
__device__ inline void load_weight_block(const uint8_t* row, int64_t b, int (&w)[8]) {
  if constexpr (kFormat == int(DType::Q8_0)) {
    const int4 lo = reinterpret_cast<const int4*>(row + b * 32)[0];
    const int4 hi = reinterpret_cast<const int4*>(row + b * 32)[1];
    w[0] = lo.x; w[1] = lo.y; w[2] = lo.z; w[3] = lo.w;
    w[4] = hi.x; w[5] = hi.y; w[6] = hi.z; w[7] = hi.w;
  } else {
    // byte j holds element j (low nibble) and j + 16 (high nibble)
    const int4 v = *reinterpret_cast<const int4*>(row + b * 16);
    const int words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      w[j] = words[j] & 0x0f0f0f0f;
      w[j + 4] = (words[j] >> 4) & 0x0f0f0f0f;
    }
  }
}

template <int kFormat>
__device__ inline int block_dot(const int (&w)[8], const int8_t* xq, int32_t x_sum) {
  const int4 lo = reinterpret_cast<const int4*>(xq)[0];
  const int4 hi = reinterpret_cast<const int4*>(xq)[1];
  int dot = 0;
  dot = __dp4a(w[0], lo.x, dot); dot = __dp4a(w[1], lo.y, dot);
  dot = __dp4a(w[2], lo.z, dot); dot = __dp4a(w[3], lo.w, dot);
  dot = __dp4a(w[4], hi.x, dot); dot = __dp4a(w[5], hi.y, dot);
  dot = __dp4a(w[6], hi.z, dot); dot = __dp4a(w[7], hi.w, dot);
  if constexpr (kFormat == int(DType::Q4_0)) dot -= 8 * x_sum;
  return dot;
}

template <int kFormat>
__global__ void __launch_bounds__(kWarps * 32) rows_quant_kernel(MatmulProblem p, QuantizedActivations qa) {
  const int64_t g = blockIdx.y;
  const GroupRows rows = group_rows(p, g);
  if (rows.count <= 0) return;  // nobody chose this expert: its weights stay unread
  const int lane = threadIdx.x % 32;
  const int64_t o = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (o >= p.out) return;
  const DevMatrix m = p.mats[g];
  const int64_t blocks = m.blocks, qg = quant_groups(p), xg = qg > 1 ? g : 0;
  const uint8_t* row = static_cast<const uint8_t*>(m.data) + o * m.row_bytes;
  float acc[kMaxDecodeRows] = {};
  for (int64_t b = lane; b < blocks; b += 32) {
    int w[8];
    load_weight_block<kFormat>(row, b, w);
    const float ws = f16_bits_to_float(m.scales[o * blocks + b]);
#pragma unroll
    for (int t = 0; t < kMaxDecodeRows; ++t) {
      if (t < rows.count) {
        const int64_t xb = ((rows.first + t) * qg + xg) * blocks + b;
        const int dot = block_dot<kFormat>(w, qa.q + xb * 32, qa.s[xb]);
        acc[t] += float(dot) * (ws * qa.d[xb]);
      }
    }
  }
  store_row_sums(p, rows, g, o, acc);
}

// Values of a float format in one 16-byte load.
template <int kFormat>
constexpr int kPerLoad = kFormat == int(DType::F32) ? 4 : 8;

// The 16 bytes of weights at `p` as floats, in element order.
template <int kFormat>
__device__ inline void unpack16(const void* p, float (&w)[kPerLoad<kFormat>]) {
  const uint4 raw = *static_cast<const uint4*>(p);
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
  if constexpr (kFormat == int(DType::F32)) {
#pragma unroll
    for (int j = 0; j < 4; ++j) w[j] = __uint_as_float(words[j]);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) {  // element 2j in the low half of word j
      w[2 * j] = kFormat == int(DType::BF16) ? __uint_as_float(words[j] << 16)
                                             : f16_bits_to_float(uint16_t(words[j] & 0xffffu));
      w[2 * j + 1] = kFormat == int(DType::BF16) ? __uint_as_float(words[j] & 0xffff0000u)
                                                 : f16_bits_to_float(uint16_t(words[j] >> 16));
    }
  }
}

// Float weights, one warp per output; lanes read consecutive values (coalesced). kVec: 16-byte
// weight loads and float4 activation loads, so that each lane keeps a whole load's worth of
// values in flight (rows of a multiple of kPerLoad values, aligned x: float_rows_vectorizable).
template <int kFormat, bool kVec>
__global__ void __launch_bounds__(kWarps * 32) rows_float_kernel(MatmulProblem p) {
  const int64_t g = blockIdx.y;
  const GroupRows rows = group_rows(p, g);
  if (rows.count <= 0) return;
  const int lane = threadIdx.x % 32;
  const int64_t o = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (o >= p.out) return;
  const DevMatrix m = p.mats[g];
  const float* x = p.x + rows.first * p.ldx + g * p.x_group;
  float acc[kMaxDecodeRows] = {};
  if constexpr (kVec) {
    constexpr int kPer = kPerLoad<kFormat>;
    const int64_t elem = kFormat == int(DType::F32) ? 4 : 2;
    const char* wrow = static_cast<const char*>(m.data) + o * p.in * elem;
    for (int64_t k = int64_t(lane) * kPer; k < p.in; k += 32 * kPer) {
      float w[kPer];
      unpack16<kFormat>(wrow + k * elem, w);
#pragma unroll
      for (int t = 0; t < kMaxDecodeRows; ++t) {
        if (t < rows.count) {
          const float4* xv = reinterpret_cast<const float4*>(x + t * p.ldx + k);
#pragma unroll
          for (int q = 0; q < kPer / 4; ++q) {
            const float4 v = xv[q];
            acc[t] += w[4 * q] * v.x + w[4 * q + 1] * v.y + w[4 * q + 2] * v.z + w[4 * q + 3] * v.w;
          }
        }
      }
    }
  } else {
    for (int64_t k = lane; k < p.in; k += 32) {
      const float w = float_weight<kFormat>(m.data, o * p.in + k);
#pragma unroll
      for (int t = 0; t < kMaxDecodeRows; ++t)
        if (t < rows.count) acc[t] += w * x[t * p.ldx + k];
    }
  }
  store_row_sums(p, rows, g, o, acc);
}

template <int kFormat>
bool float_rows_vectorizable(const MatmulProblem& p) {
  return p.in % kPerLoad<kFormat> == 0 && p.ldx % 4 == 0 && p.x_group % 4 == 0 &&
         reinterpret_cast<uintptr_t>(p.x) % 16 == 0;  // weight rows: cudaMalloc'd, in % kPer == 0
}

template <int kFormat>
__global__ void __launch_bounds__(kTileThreads) tiled_quant_kernel(MatmulProblem p, QuantizedActivations qa) {
  const int64_t g = blockIdx.z;
  const GroupRows rows = group_rows(p, g);
  const int64_t r0 = int64_t(blockIdx.y) * kTile, o0 = int64_t(blockIdx.x) * kTile;
  if (r0 >= rows.count) return;
  const DevMatrix m = p.mats[g];
  const int64_t blocks = m.blocks, qg = quant_groups(p), xg = qg > 1 ? g : 0;
  __shared__ int sx[kTile][9], sw[kTile][9];  // 8 words of quants, padded against bank conflicts
  __shared__ float sxd[kTile], swd[kTile];
  __shared__ int sxs[kTile];
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  float acc[4][4] = {};
  for (int64_t b = 0; b < blocks; ++b) {
    for (int i = tid; i < kTile * 8; i += kTileThreads) {
      const int r = i / 8, word = i % 8;
      const int64_t row = r0 + r, o = o0 + r;
      const int64_t xb = ((rows.first + row) * qg + xg) * blocks + b;
      sx[r][word] = row < rows.count ? reinterpret_cast<const int*>(qa.q + xb * 32)[word] : 0;
      int w = 0;
      if (o < p.out) {
        const uint8_t* wrow = static_cast<const uint8_t*>(m.data) + o * m.row_bytes;
        if constexpr (kFormat == int(DType::Q8_0)) {
          w = reinterpret_cast<const int*>(wrow + b * 32)[word];
        } else {
          const int packed = reinterpret_cast<const int*>(wrow + b * 16)[word % 4];
          w = word < 4 ? packed & 0x0f0f0f0f : (packed >> 4) & 0x0f0f0f0f;
        }
      }
      sw[r][word] = w;
    }
    for (int i = tid; i < kTile; i += kTileThreads) {
      const int64_t row = r0 + i, o = o0 + i;
      const int64_t xb = ((rows.first + row) * qg + xg) * blocks + b;
      sxd[i] = row < rows.count ? qa.d[xb] : 0.f;
      sxs[i] = row < rows.count ? qa.s[xb] : 0;
      swd[i] = o < p.out ? f16_bits_to_float(m.scales[o * blocks + b]) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int a = 0; a < 4; ++a) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int xr = ty * 4 + a, wr = tx * 4 + c;
        int dot = 0;
#pragma unroll
        for (int word = 0; word < 8; ++word) dot = __dp4a(sx[xr][word], sw[wr][word], dot);
        if constexpr (kFormat == int(DType::Q4_0)) dot -= 8 * sxs[xr];
        acc[a][c] += float(dot) * (swd[wr] * sxd[xr]);
      }
    }
    __syncthreads();
  }
  store_tile(p, rows, g, r0 + ty * 4, o0 + tx * 4, acc);
}

template <int kFormat>
__global__ void __launch_bounds__(kTileThreads) tiled_float_kernel(MatmulProblem p) {
  const int64_t g = blockIdx.z;
  const GroupRows rows = group_rows(p, g);
  const int64_t r0 = int64_t(blockIdx.y) * kTile, o0 = int64_t(blockIdx.x) * kTile;
  if (r0 >= rows.count) return;
  const DevMatrix m = p.mats[g];
  const float* x = p.x + rows.first * p.ldx + g * p.x_group;
  __shared__ float sx[kTile][33], sw[kTile][33];
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < p.in; k0 += 32) {
    for (int i = tid; i < kTile * 32; i += kTileThreads) {
      const int r = i / 32, kk = i % 32;
      const int64_t row = r0 + r, o = o0 + r, k = k0 + kk;
      sx[r][kk] = row < rows.count && k < p.in ? x[row * p.ldx + k] : 0.f;
      sw[r][kk] = o < p.out && k < p.in ? float_weight<kFormat>(m.data, o * p.in + k) : 0.f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < 32; ++kk) {
      float xv[4], wv[4];
#pragma unroll
      for (int a = 0; a < 4; ++a) xv[a] = sx[ty * 4 + a][kk];
#pragma unroll
      for (int c = 0; c < 4; ++c) wv[c] = sw[tx * 4 + c][kk];
#pragma unroll
      for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[a][c] += xv[a] * wv[c];
    }
    __syncthreads();
  }
  store_tile(p, rows, g, r0 + ty * 4, o0 + tx * 4, acc);
}

template <int kFormat>
void launch_float(const MatmulProblem& p, cudaStream_t stream) {
  if (p.max_group_rows <= kMaxDecodeRows) {
    const dim3 grid(unsigned(ceil_div(p.out, kWarps)), unsigned(p.groups));
    if (float_rows_vectorizable<kFormat>(p))
      rows_float_kernel<kFormat, true><<<grid, kWarps * 32, 0, stream>>>(p);
    else
      rows_float_kernel<kFormat, false><<<grid, kWarps * 32, 0, stream>>>(p);
  } else {
    const dim3 grid(unsigned(ceil_div(p.out, kTile)), unsigned(ceil_div(p.max_group_rows, kTile)),
                    unsigned(p.groups));
    tiled_float_kernel<kFormat><<<grid, kTileThreads, 0, stream>>>(p);
  }
  CUDA_CHECK_LAUNCH();
}

template <int kFormat>
void launch_quant(const MatmulProblem& p, const QuantizedActivations& qa, cudaStream_t stream) {
  const int64_t blocks = ceil_div(p.in, 32);
  const int64_t qrows = p.n * (p.x_group != 0 ? p.groups : 1);
  quantize_kernel<<<unsigned(ceil_div(qrows * blocks * 32, 256)), 256, 0, stream>>>(p, blocks, qa);
  CUDA_CHECK_LAUNCH();
  if (p.max_group_rows <= kMaxDecodeRows) {
    const dim3 grid(unsigned(ceil_div(p.out, kWarps)), unsigned(p.groups));
    rows_quant_kernel<kFormat><<<grid, kWarps * 32, 0, stream>>>(p, qa);
  } else {
    const dim3 grid(unsigned(ceil_div(p.out, kTile)), unsigned(ceil_div(p.max_group_rows, kTile)),
                    unsigned(p.groups));
    tiled_quant_kernel<kFormat><<<grid, kTileThreads, 0, stream>>>(p, qa);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace

int64_t quantized_blocks(const MatmulProblem& p) {
  return p.n * (p.x_group != 0 ? p.groups : 1) * ceil_div(p.in, 32);
}

void matmul(const MatmulProblem& p, const QuantizedActivations& scratch, cudaStream_t stream) {
  if (p.n <= 0) return;
  switch (DType(p.dtype)) {
    case DType::F32: return launch_float<int(DType::F32)>(p, stream);
    case DType::BF16: return launch_float<int(DType::BF16)>(p, stream);
    case DType::F16: return launch_float<int(DType::F16)>(p, stream);
    case DType::Q8_0: return launch_quant<int(DType::Q8_0)>(p, scratch, stream);
    case DType::Q4_0: return launch_quant<int(DType::Q4_0)>(p, scratch, stream);
  }
  throw std::invalid_argument("cuda matmul: unknown weight format");
}

}  // namespace r1lite::cuda
