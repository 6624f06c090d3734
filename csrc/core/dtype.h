// Storage formats of weights. Activations are always f32.
#pragma once
#include <cstddef>
#include <cstdint>

namespace r1lite {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
bool dtype_from_name(const char* name, DType* out);  // "f32" | "bf16" | "f16"

float bf16_to_f32(uint16_t h);
float f16_to_f32(uint16_t h);

// dst[i] = float(src[i]) for n elements stored in format t.
void convert_row_to_f32(DType t, const void* src, float* dst, int64_t n);

}  // namespace r1lite
