// Scalar reference matmul: the definition every SIMD kernel is tested against.
#include "core/dtype.h"
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

}  // namespace

const MatmulKernels kMatmulScalar = {rows<DType::F32>, rows<DType::BF16>, rows<DType::F16>};

}  // namespace r1lite
