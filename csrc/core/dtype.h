// Storage formats of weights. Activations are always f32. core/formats.h describes each one
// (its block size and bytes, the activations its dot product takes, its reference dequantizer);
// the functions here read that table.
//
// r1lite's own block-quantized formats (DESIGN.md "Weight formats") are planar: each row is
// ceil(cols/32) blocks of 32 values (the last block zero-padded) in two planes, the quants and
// one f16 scale per block.
//   q8_0: int8 quants [rows, blocks*32];  value = q * scale
//   q4_0: uint8 quants [rows, blocks*16], byte j of a block holds element j (low nibble) and
//         element j+16 (high nibble);     value = (nibble - 8) * scale
// The GGUF block formats keep ggml's layout (scales inside each block, core/blocks.h): a row is
// cols / block whole blocks.
#pragma once
#include <cstddef>
#include <cstdint>

namespace r1lite {

enum class DType : int {
  F32 = 0, BF16 = 1, F16 = 2, Q8_0 = 3, Q4_0 = 4,  // float formats, r1lite's planar q8_0 / q4_0
  GGUF_Q8_0, GGUF_Q4_0, Q4_1, Q5_0, Q5_1,            // GGUF's 32-value blocks
  Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS,      // K-quants (256-value blocks) and iq4
  IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M, IQ3_XXS,    // i-quants (256-value blocks, codebooks)
  IQ3_S,
};
constexpr int kNumDTypes = int(DType::IQ3_S) + 1;

constexpr int64_t kQuantBlock = 32;

// r1lite's planar formats: a quant plane and an f16 scale plane [rows, blocks] beside it.
inline bool has_scale_plane(DType t) { return t == DType::Q8_0 || t == DType::Q4_0; }
// GGUF's block formats: whole blocks with their scales inside.
inline bool is_block_format(DType t) { return int(t) >= int(DType::GGUF_Q8_0); }
// Bytes per element (float formats), per quant plane element (planar: int8 / uint8), 1 for GGUF
// blocks (held as bytes [rows, row bytes]).
size_t dtype_size(DType t);
// Bytes of one row (of the quant plane for planar formats). Block formats: cols must be a
// multiple of the block (format_info(t).block).
int64_t row_bytes(DType t, int64_t cols);
const char* dtype_name(DType t);
bool dtype_from_name(const char* name, DType* out);  // a name of core/formats.h's table

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
// dst[i] = value i of a planar block-quantized row (quants and f16 scales of that row), n elements.
void dequantize_row(DType t, const void* quants, const uint16_t* scales, float* dst, int64_t n);

}  // namespace r1lite
