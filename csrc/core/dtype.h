// Storage formats of weights. Activations are always f32.
//
// Block-quantized formats (DESIGN.md "Weight formats") store each row as ceil(cols/32) blocks of
// 32 values (the last block zero-padded) in two planes: the quants and one f16 scale per block.
//   q8_0: int8 quants [rows, blocks*32];  value = q * scale
//   q4_0: uint8 quants [rows, blocks*16], byte j of a block holds element j (low nibble) and
//         element j+16 (high nibble);     value = (nibble - 8) * scale
#pragma once
#include <cstddef>
#include <cstdint>

namespace r1lite {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2, Q8_0 = 3, Q4_0 = 4 };

constexpr int64_t kQuantBlock = 32;

inline bool is_quantized(DType t) { return t == DType::Q8_0 || t == DType::Q4_0; }
// Bytes per element (float formats) or per quant plane element (int8 / uint8).
size_t dtype_size(DType t);
// Bytes of one row of the quant plane (or the whole row for float formats).
int64_t row_bytes(DType t, int64_t cols);
const char* dtype_name(DType t);
bool dtype_from_name(const char* name, DType* out);  // "f32" | "bf16" | "f16" | "q8_0" | "q4_0"

float bf16_to_f32(uint16_t h);
float f16_to_f32(uint16_t h);
// Round to nearest, ties to even (NaN stays NaN; f16 overflows to inf, keeps subnormals).
uint16_t f32_to_bf16(float f);
uint16_t f32_to_f16(float f);

// Row n values of src stored in format t: float formats into dst; q8_0 as quants into dst
// (ceil(n/32)*32 bytes, zero-padded) and one f16 scale per block into scales (max|x|/127, as
// weights are quantized). Not for q4_0.
void encode_row(DType t, const float* src, int64_t n, void* dst, uint16_t* scales);

// dst[i] = float(src[i]) for n elements stored in float format t.
void convert_row_to_f32(DType t, const void* src, float* dst, int64_t n);
// dst[i] = value i of a block-quantized row (quants and f16 scales of that row), n elements.
void dequantize_row(DType t, const void* quants, const uint16_t* scales, float* dst, int64_t n);

}  // namespace r1lite
