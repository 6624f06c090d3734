// Keys and values of past positions on the CPU. Memory is allocated in pages of
// KvLayout::kPagePositions positions (all layers per page, laid out as kv_layout.h says) as the
// context grows, up to the context limit chosen at load.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "model/kv_layout.h"

namespace r1lite {

class KVCache {
 public:
  static constexpr int64_t kPagePositions = KvLayout::kPagePositions;

  KVCache(const KvLayout& layout, int64_t max_positions) : layout_(layout), max_positions_(max_positions) {}

  // Makes room for positions [0, n). Throws std::invalid_argument past max_positions.
  void reserve(int64_t n);
  // Forgets every position and releases the pages.
  void clear();

  // key_dim (value_dim) values of the key (value) of head `head` of `layer` at position `pos`
  // (must be reserved); the following positions of the same page follow at key_dim (value_dim)
  // strides.
  float* key(int64_t layer, int64_t head, int64_t pos) { return page(pos) + layout_.key_offset(layer, head, pos); }
  float* value(int64_t layer, int64_t head, int64_t pos) {
    return page(pos) + layout_.value_offset(layer, head, pos);
  }

  int64_t length = 0;  // positions filled so far
  int64_t max_positions() const { return max_positions_; }
  int64_t bytes_allocated() const;
  int64_t bytes_per_position() const { return layout_.floats_per_position() * int64_t(sizeof(float)); }

 private:
  float* page(int64_t pos) { return pages_[size_t(pos / kPagePositions)].get(); }

  KvLayout layout_;
  int64_t max_positions_;
  std::vector<std::unique_ptr<float[]>> pages_;
};

}  // namespace r1lite
