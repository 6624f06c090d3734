// Keys and values of past positions. Memory is allocated in pages of kPagePositions positions
// (all layers per page) as the context grows, up to the context limit chosen at load.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace r1lite {

class KVCache {
 public:
  static constexpr int64_t kPagePositions = 256;

  KVCache(int64_t num_layers, int64_t kv_dim, int64_t max_positions);

  // Makes room for positions [0, n). Throws std::invalid_argument past max_positions.
  void reserve(int64_t n);
  // Forgets every position and releases the pages.
  void clear();

  // kv_dim values of the key / value of `layer` at position `pos` (must be reserved).
  float* key(int64_t layer, int64_t pos) { return slot(layer, 0, pos); }
  float* value(int64_t layer, int64_t pos) { return slot(layer, 1, pos); }

  int64_t length = 0;  // positions filled so far
  int64_t max_positions() const { return max_positions_; }
  int64_t bytes_allocated() const;

 private:
  float* slot(int64_t layer, int64_t kv, int64_t pos) {
    float* page = pages_[size_t(pos / kPagePositions)].get();
    return page + ((layer * 2 + kv) * kPagePositions + pos % kPagePositions) * kv_dim_;
  }

  int64_t num_layers_, kv_dim_, max_positions_;
  std::vector<std::unique_ptr<float[]>> pages_;  // page: [layer][k|v][kPagePositions][kv_dim]
};

}  // namespace r1lite
