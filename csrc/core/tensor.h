// A view of a tensor's bytes owned by someone else (a mapped file or a Python array).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace r1lite {

struct Tensor {
  const void* data = nullptr;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;

  bool empty() const { return data == nullptr; }
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t cols() const { return shape.size() < 2 ? 1 : shape[1]; }
  const float* f32() const { return static_cast<const float*>(data); }
};

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace r1lite
