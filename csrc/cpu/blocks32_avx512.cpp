// Avx512 kernels of GGUF's block formats gguf_q8_0, gguf_q4_0, q4_1, q5_0, q5_1, iq4_nl (core/blocks.h), for
// cpu/matmul.cpp's dispatch (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything
// here has internal linkage except the list.
#include <immintrin.h>

#include "core/blocks.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {

const BlockKernel kBlocks32Avx512[] = {
    {DType::F32, nullptr},
};

}  // namespace r1lite
