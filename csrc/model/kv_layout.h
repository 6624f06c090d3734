// Where a layer's keys and values of a position live in one page of the KV cache: one layout
// for the CPU cache (kv_cache.h) and the CUDA one (cuda/device_types.cuh CacheView).
//
// A page holds kPagePositions positions of every layer:
//   [layer]{ keys [head][kPagePositions][key_dim], values [head][kPagePositions][value_dim] }
// so one head's keys (or values) within a page are contiguous rows that attention reads as a
// matrix. Grouped-query attention caches a key and a value row per kv head. DeepSeek's MLA caches
// one row per position (the latent followed by the rope key, ARCH.md §4) and no values: its
// values are the latent part of that same row.
#pragma once
#include <cstdint>

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

  static KvLayout for_model(const ModelConfig& c) {
    if (c.attention == AttentionKind::Mla) return {c.num_layers, 1, c.kv_lora_rank + c.qk_rope_head_dim, 0};
    return {c.num_layers, c.num_kv_heads, c.head_dim, c.head_dim};
  }

  R1LITE_HOST_DEVICE int64_t layer_floats() const { return heads * kPagePositions * (key_dim + value_dim); }
  R1LITE_HOST_DEVICE int64_t page_floats() const { return layers * layer_floats(); }
  int64_t floats_per_position() const { return layers * heads * (key_dim + value_dim); }
  // Offsets within a page of the key (value) row of `head` of `layer` at position `pos`.
  R1LITE_HOST_DEVICE int64_t key_offset(int64_t layer, int64_t head, int64_t pos) const {
    return layer * layer_floats() + (head * kPagePositions + pos % kPagePositions) * key_dim;
  }
  R1LITE_HOST_DEVICE int64_t value_offset(int64_t layer, int64_t head, int64_t pos) const {
    return layer * layer_floats() + heads * kPagePositions * key_dim +
           (head * kPagePositions + pos % kPagePositions) * value_dim;
  }
};

}  // namespace r1lite
