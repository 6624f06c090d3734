#include "cpu/matmul.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/matmul_kernels.h"

namespace r1lite {

static const MatmulKernels& kernels_for(Isa isa) {
  if (!isa_supported(isa))
    throw std::invalid_argument(std::string("this CPU does not support ") + isa_name(isa));
#if R1LITE_HAVE_X86
  if (isa == Isa::Avx512) return kMatmulAvx512;
  if (isa == Isa::Avx2) return kMatmulAvx2;
#endif
  return kMatmulScalar;
}

static Isa initial_isa() {
  if (const char* env = std::getenv("R1LITE_ISA")) {
    for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
      if (!std::strcmp(env, isa_name(isa)) && isa_supported(isa)) return isa;
  }
  return best_isa();
}

static Isa g_isa = initial_isa();

Isa active_isa() { return g_isa; }

void set_active_isa(Isa isa) {
  kernels_for(isa);  // throws if unsupported
  g_isa = isa;
}

static MatmulRowsFn kernel_for_format(const MatmulKernels& k, DType t) {
  switch (t) {
    case DType::F32: return k.f32;
    case DType::BF16: return k.bf16;
    case DType::F16: return k.f16;
  }
  throw std::invalid_argument("matmul: unsupported weight format");
}

void matmul(ThreadPool& pool, const float* x, int64_t n, const Tensor& w, float* y) {
  const MatmulRowsFn fn = kernel_for_format(kernels_for(g_isa), w.dtype);
  const int64_t rows = w.rows(), in = w.cols();
  // Chunks of rows small enough to balance the threads, in multiples of 16 (the kernels' row block).
  int64_t grain = rows / (int64_t(pool.size()) * 4);
  grain = grain < 16 ? 16 : (grain + 15) / 16 * 16;
  pool.parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    fn(x, n, in, w.data, in, r0, r1, y, rows);
  });
}

void matmul_with_isa(Isa isa, const float* x, int64_t n, const Tensor& w, float* y) {
  const MatmulRowsFn fn = kernel_for_format(kernels_for(isa), w.dtype);
  fn(x, n, w.cols(), w.data, w.cols(), 0, w.rows(), y, w.rows());
}

}  // namespace r1lite
