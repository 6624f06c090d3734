// Scalar reference matmul: the definition every SIMD kernel is tested against.
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/formats.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

template <DType kFormat>
float weight_at(const void* w, int64_t i) {
  if constexpr (kFormat == DType::F32) return static_cast<const float*>(w)[i];
  if constexpr (kFormat == DType::BF16) return bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
  if constexpr (kFormat == DType::F16) return f16_to_f32(static_cast<const uint16_t*>(w)[i]);
  return 0.f;
}

template <DType kFormat>
void rows(const float* x, int64_t n_tok, int64_t ldx, const void* w, int64_t in, int64_t r0,
          int64_t r1, float* y, int64_t ldy) {
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t r = r0; r < r1; ++r) {
      float sum = 0.f;
      for (int64_t k = 0; k < in; ++k) sum += x[t * ldx + k] * weight_at<kFormat>(w, r * in + k);
      y[t * ldy + r] = sum;
    }
  }
}

// Quant value i (0..31) of block b of a row of the quant plane.
template <DType kFormat>
int quant_at(const uint8_t* row, int64_t b, int64_t i) {
  if constexpr (kFormat == DType::Q8_0) {
    return int(static_cast<int8_t>(row[b * 32 + i]));
  } else {
    const uint8_t byte = row[b * 16 + i % 16];
    return int(i < 16 ? byte & 0x0f : byte >> 4) - 8;
  }
}

template <DType kFormat>
void qrows(const int8_t* xq, const float* xd, const int32_t* /*xs*/, int64_t n_tok, int64_t blocks,
           const void* wq,
           const uint16_t* wd, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const int64_t stride = row_bytes(kFormat, blocks * 32);
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t r = r0; r < r1; ++r) {
      const auto* row = static_cast<const uint8_t*>(wq) + r * stride;
      float sum = 0.f;
      for (int64_t b = 0; b < blocks; ++b) {
        int32_t dot = 0;
        for (int64_t i = 0; i < 32; ++i)
          dot += quant_at<kFormat>(row, b, i) * int32_t(xq[(t * blocks + b) * 32 + i]);
        sum += float(dot) * (f16_to_f32(wd[r * blocks + b]) * xd[t * blocks + b]);
      }
      y[t * ldy + r] = sum;
    }
  }
}

// Value j of cached row t (ld values apart; q8_0 scales [.][ld/32]).
template <DType kFormat>
float row_value(const void* rows, const uint16_t* scales, int64_t t, int64_t j, int64_t ld) {
  if constexpr (kFormat == DType::Q8_0)
    return float(static_cast<const int8_t*>(rows)[t * ld + j]) * f16_to_f32(scales[t * (ld / 32) + j / 32]);
  return weight_at<kFormat>(rows, t * ld + j);
}

template <DType kFormat>
void weighted_sum(const float* p, int64_t ldp, int64_t heads, const void* rows, const uint16_t* scales,
                  int64_t count, int64_t dim, int64_t ld, float* out, int64_t ldo) {
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t j = 0; j < dim; ++j) {
      float sum = 0.f;
      for (int64_t t = 0; t < count; ++t) sum += p[h * ldp + t] * row_value<kFormat>(rows, scales, t, j, ld);
      out[h * ldo + j] += sum;
    }
  }
}

// A block format's rows: each weight row dequantized once (the format table's reference), then
// dotted in f32 with every token's activation blocks as f32.
template <DType kFormat>
void block_rows(const void* x, int64_t x_row_bytes, int64_t n_tok, const void* w, int64_t w_row_bytes,
                int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const FormatInfo& f = format_info(kFormat);
  const int64_t in = blocks * f.block;
  std::vector<float> xf(size_t(n_tok * in));
  std::vector<float> wf(static_cast<size_t>(in));
  for (int64_t t = 0; t < n_tok; ++t)
    act_row_to_f32(f.act, static_cast<const char*>(x) + t * x_row_bytes, &xf[size_t(t * in)], in);
  for (int64_t r = r0; r < r1; ++r) {
    f.blocks_to_f32(static_cast<const char*>(w) + r * w_row_bytes, wf.data(), blocks);
    for (int64_t t = 0; t < n_tok; ++t) {
      float sum = 0.f;
      for (int64_t k = 0; k < in; ++k) sum += wf[size_t(k)] * xf[size_t(t * in + k)];
      y[t * ldy + r] = sum;
    }
  }
}

template <int... kIds>
BlockMatmulRowsFn block_reference_of(DType t, std::integer_sequence<int, kIds...>) {
  BlockMatmulRowsFn found = nullptr;
  ((int(t) == kIds ? (found = block_rows<DType(kIds)>, 0) : 0), ...);
  return found;
}

}  // namespace

BlockMatmulRowsFn block_kernel_reference(DType format) {
  if (!is_block_format(format)) return nullptr;
  return block_reference_of(format, std::make_integer_sequence<int, kNumDTypes>{});
}

const MatmulKernels kMatmulScalar = {rows<DType::F32>, rows<DType::BF16>, rows<DType::F16>,
                                     qrows<DType::Q8_0>, qrows<DType::Q4_0>,
                                     weighted_sum<DType::F32>, weighted_sum<DType::BF16>,
                                     weighted_sum<DType::F16>, weighted_sum<DType::Q8_0>};

}  // namespace r1lite
