// The weight format table (in the spirit of ggml's type traits): for each storage format its
// names, its layout, block size and bytes, the activation format its dot product takes, and its
// scalar reference dequantizer. The matmul dispatch (cpu/matmul.cpp), the bindings (which tell
// Python the table: _core.weight_formats()), the model file, the GGUF importer and `r1lite info`
// all read formats from here. Kernels per instruction set: cpu/matmul_kernels.h.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace r1lite {

enum class Layout : uint8_t {
  Float,   // one value per element
  Planar,  // r1lite's q8_0 / q4_0: quant plane + f16 scale plane (core/dtype.h)
  Blocks,  // GGUF's blocks, scales inside (core/blocks.h)
};

enum class ActFormat : uint8_t {
  F32,       // float weights multiply f32 activations
  Q8Planar,  // int8 per 32 values, f32 scales and sums in planes beside (quantize_activations)
  Q8_32,     // ActQ8_32 blocks (core/blocks.h)
  Q8_K,      // ActQ8_K blocks of 256
};

struct FormatInfo {
  DType type;
  const char* name;       // r1lite's name ("q4_k")
  const char* gguf_name;  // GGML's type name ("Q4_K"), nullptr if GGUF has no such type
  Layout layout;
  int64_t block;          // values per block (1 for float formats)
  int64_t block_bytes;    // bytes per block (planar: of the quant plane only)
  ActFormat act;
  // Blocks layout: `blocks` whole blocks of src as f32 (block * blocks values). Null otherwise.
  void (*blocks_to_f32)(const void* src, float* dst, int64_t blocks);
};

// Every format, in DType order.
extern const FormatInfo kFormats[kNumDTypes];
inline const FormatInfo& format_info(DType t) { return kFormats[int(t)]; }
// The format of a name, or nullptr.
const FormatInfo* format_by_name(const char* name);

// Bits per weight of a format (bytes per block * 8 / values per block; planar adds its scales).
double bits_per_weight(DType t);

// Bytes of one row of `in` activations in a block activation format (Q8_32 or Q8_K; in a multiple
// of its block). cpu/matmul.h quantizes them.
int64_t act_row_bytes(ActFormat fmt, int64_t in);
// One row of activation blocks back to f32 (the values the integer kernels multiply by).
void act_row_to_f32(ActFormat fmt, const void* row, float* dst, int64_t in);

}  // namespace r1lite
