// A view of a tensor's bytes owned by someone else (a mapped file or a Python array).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace r1lite {

struct Tensor {
  const void* data = nullptr;        // values, or the quant plane of a block-quantized tensor
  const uint16_t* scales = nullptr;  // block-quantized: f16 scales [rows, blocks]
  DType dtype = DType::F32;
  std::vector<int64_t> shape;        // logical shape (unpadded)
  std::vector<int64_t> scale_shape;  // block-quantized: [rows, blocks]

  bool empty() const { return data == nullptr; }
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t cols() const { return shape.size() < 2 ? 1 : shape[1]; }
  const float* f32() const { return static_cast<const float*>(data); }

  // Rows [r0, r0 + count) as a tensor of their own (a view; quantized scales follow).
  Tensor rows_slice(int64_t r0, int64_t count) const;

  // Row r as f32 (dequantized for block formats): n = cols() values.
  void row_to_f32(int64_t r, float* out) const;
};

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace r1lite
