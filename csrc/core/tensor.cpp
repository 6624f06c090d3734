#include "core/tensor.h"

#include "core/formats.h"

namespace r1lite {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Tensor Tensor::rows_slice(int64_t r0, int64_t count) const {
  Tensor t = *this;
  const int64_t n = cols();
  t.data = static_cast<const char*>(data) + r0 * row_bytes(dtype, n);
  t.shape[0] = count;
  if (has_scale_plane(dtype)) {
    const int64_t blocks = (n + kQuantBlock - 1) / kQuantBlock;
    t.scales = scales + r0 * blocks;
    t.scale_shape = {count, blocks};
  }
  return t;
}

void Tensor::row_to_f32(int64_t r, float* out) const {
  const int64_t n = cols();
  const auto* row = static_cast<const char*>(data) + r * row_bytes(dtype, n);
  const FormatInfo& f = format_info(dtype);
  if (f.layout == Layout::Blocks) {
    f.blocks_to_f32(row, out, n / f.block);
  } else if (has_scale_plane(dtype)) {
    dequantize_row(dtype, row, scales + r * ((n + kQuantBlock - 1) / kQuantBlock), out, n);
  } else {
    convert_row_to_f32(dtype, row, out, n);
  }
}

}  // namespace r1lite
