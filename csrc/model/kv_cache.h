// Keys and values of past positions. Memory is allocated in pages of kPagePositions positions
// (all layers per page) as the context grows, up to the context limit chosen at load. Within a
// page one head's keys (or values) are contiguous rows: attention reads them as a matrix.
//
// Grouped-query attention caches a key and a value row per kv head. DeepSeek's MLA caches one
// row per position (the latent followed by the rope key, ARCH.md §4) and no values: its values
// are the latent part of that same row.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace r1lite {

class KVCache {
 public:
  static constexpr int64_t kPagePositions = 256;

  KVCache(int64_t num_layers, int64_t num_heads, int64_t key_dim, int64_t value_dim,
          int64_t max_positions);

  // Makes room for positions [0, n). Throws std::invalid_argument past max_positions.
  void reserve(int64_t n);
  // Forgets every position and releases the pages.
  void clear();

  // key_dim (value_dim) values of the key (value) of head `head` of `layer` at position `pos`
  // (must be reserved); the following positions of the same page follow at key_dim (value_dim)
  // strides.
  float* key(int64_t layer, int64_t head, int64_t pos) {
    return page(pos) + layer * layer_floats() + (head * kPagePositions + pos % kPagePositions) * key_dim_;
  }
  float* value(int64_t layer, int64_t head, int64_t pos) {
    return page(pos) + layer * layer_floats() + num_heads_ * kPagePositions * key_dim_ +
           (head * kPagePositions + pos % kPagePositions) * value_dim_;
  }

  int64_t length = 0;  // positions filled so far
  int64_t max_positions() const { return max_positions_; }
  int64_t bytes_allocated() const;
  int64_t bytes_per_position() const;

 private:
  float* page(int64_t pos) { return pages_[size_t(pos / kPagePositions)].get(); }
  int64_t layer_floats() const { return num_heads_ * kPagePositions * (key_dim_ + value_dim_); }

  int64_t num_layers_, num_heads_, key_dim_, value_dim_, max_positions_;
  // page: [layer]{ keys [head][kPagePositions][key_dim], values [head][kPagePositions][value_dim] }
  std::vector<std::unique_ptr<float[]>> pages_;
};

}  // namespace r1lite
