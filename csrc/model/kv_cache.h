// Keys and values of past positions. Memory is allocated in pages of kPagePositions positions
// (all layers per page) as the context grows, up to the context limit chosen at load. Within a
// page one head's keys (or values) are contiguous rows of head_dim: attention reads them as a
// matrix.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace r1lite {

class KVCache {
 public:
  static constexpr int64_t kPagePositions = 256;

  KVCache(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim, int64_t max_positions);

  // Makes room for positions [0, n). Throws std::invalid_argument past max_positions.
  void reserve(int64_t n);
  // Forgets every position and releases the pages.
  void clear();

  // head_dim values of the key / value of kv head `head` of `layer` at position `pos` (must be
  // reserved); the following positions of the same page follow at head_dim strides.
  float* key(int64_t layer, int64_t head, int64_t pos) { return slot(layer, 0, head, pos); }
  float* value(int64_t layer, int64_t head, int64_t pos) { return slot(layer, 1, head, pos); }

  int64_t length = 0;  // positions filled so far
  int64_t max_positions() const { return max_positions_; }
  int64_t bytes_allocated() const;

 private:
  float* slot(int64_t layer, int64_t kv, int64_t head, int64_t pos) {
    float* page = pages_[size_t(pos / kPagePositions)].get();
    return page + (((layer * 2 + kv) * num_kv_heads_ + head) * kPagePositions + pos % kPagePositions) * head_dim_;
  }
  int64_t page_floats() const { return num_layers_ * 2 * num_kv_heads_ * kPagePositions * head_dim_; }

  int64_t num_layers_, num_kv_heads_, head_dim_, max_positions_;
  // page: [layer][k|v][kv head][kPagePositions][head_dim]
  std::vector<std::unique_ptr<float[]>> pages_;
};

}  // namespace r1lite
