// Where a layer's keys and values of a position live in one page of the KV cache: one layout
// for the CPU cache (kv_cache.h) and the CUDA one (cuda/device_types.cuh CacheView).
//
// A page holds kPagePositions positions of every layer:
//   [layer]{ keys [head]{rows [kPagePositions][key row bytes], scales [kPagePositions][blocks]},
//            values [head]{the same with value_dim} }
// so one head's keys (or values) within a page are contiguous rows that attention reads as a
// matrix, in the cache's storage format: f32, f16 or bf16 rows, or q8_0 rows of int8 quants with
// their f16 block scales in a plane beside them (the scales plane is empty for float formats).
// Grouped-query attention caches a key and a value row per kv head. DeepSeek's MLA caches one
// row per position (the latent followed by the rope key, ARCH.md §4) and no values: its values
// are the latent part of that same row.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "model/config.h"

#if defined(__CUDACC__)
#define R1LITE_HOST_DEVICE __host__ __device__
#else
#define R1LITE_HOST_DEVICE
#endif

namespace r1lite {

struct KvLayout {
  static constexpr int64_t kPagePositions = 256;

  int64_t layers = 0, heads = 0, key_dim = 0, value_dim = 0;
  DType format = DType::F32;

  // The MTP modules' blocks are cache layers num_layers + d.
  static KvLayout for_model(const ModelConfig& c) {
    const int64_t layers = c.num_layers + c.mtp_layers;
    if (c.attention == AttentionKind::Mla)
      return {layers, 1, c.kv_lora_rank + c.qk_rope_head_dim, 0, c.kv_cache};
    return {layers, c.num_kv_heads, c.head_dim, c.head_dim, c.kv_cache};
  }

  // Bytes of one stored row of dim values, and of its block scales (q8_0 only).
  R1LITE_HOST_DEVICE int64_t row_bytes(int64_t dim) const {
    if (format == DType::Q8_0) return (dim + kQuantBlock - 1) / kQuantBlock * kQuantBlock;
    return dim * (format == DType::F32 ? 4 : 2);
  }
  R1LITE_HOST_DEVICE int64_t scale_bytes(int64_t dim) const {
    return format == DType::Q8_0 ? (dim + kQuantBlock - 1) / kQuantBlock * 2 : 0;
  }
  // One head's rows and scales of a page.
  R1LITE_HOST_DEVICE int64_t head_bytes(int64_t dim) const {
    return kPagePositions * (row_bytes(dim) + scale_bytes(dim));
  }
  R1LITE_HOST_DEVICE int64_t layer_bytes() const { return heads * (head_bytes(key_dim) + head_bytes(value_dim)); }
  R1LITE_HOST_DEVICE int64_t page_bytes() const { return layers * layer_bytes(); }
  int64_t bytes_per_position() const {
    return layers * heads * (row_bytes(key_dim) + scale_bytes(key_dim) + row_bytes(value_dim) + scale_bytes(value_dim));
  }
  // Offsets within a page of the first byte of the key (value) rows of `head` of `layer`; the
  // row of position pos is row_bytes further per position, its scales in the plane after them.
  R1LITE_HOST_DEVICE int64_t key_head_offset(int64_t layer, int64_t head) const {
    return layer * layer_bytes() + head * head_bytes(key_dim);
  }
  R1LITE_HOST_DEVICE int64_t value_head_offset(int64_t layer, int64_t head) const {
    return layer * layer_bytes() + heads * head_bytes(key_dim) + head * head_bytes(value_dim);
  }
};

}  // namespace r1lite
