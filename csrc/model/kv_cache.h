// Keys and values of past positions on the CPU. Memory is allocated in pages of
// KvLayout::kPagePositions positions (all layers per page, laid out as kv_layout.h says) as the
// context grows, up to the context limit chosen at load. Rows are stored once per position in the
// cache's format (f32, f16, bf16 or q8_0) and read by attention in that format.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/matmul.h"
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
  // Forgets positions [n, length) and releases the pages past the one holding position n - 1.
  // Throws std::invalid_argument unless 0 <= n <= length.
  void truncate(int64_t n);
  // A new cache holding a copy of this one's first n positions (a request that shares this
  // sequence's prefix starts from it). Throws std::invalid_argument unless 0 <= n <= length.
  std::unique_ptr<KVCache> copy_prefix(int64_t n) const;

  // The key (value) rows of head `head` of `layer` from position `pos` (reserved) to the end of
  // its page, as attention reads them.
  StoredRows keys(int64_t layer, int64_t head, int64_t pos) { return rows(pos, layout_.key_head_offset(layer, head), layout_.key_dim); }
  StoredRows values(int64_t layer, int64_t head, int64_t pos) {
    return rows(pos, layout_.value_head_offset(layer, head), layout_.value_dim);
  }
  // Stores key_dim (value_dim) f32 values as the key (value) of head `head` of `layer` at `pos`.
  void store_key(int64_t layer, int64_t head, int64_t pos, const float* src) {
    store(pos, layout_.key_head_offset(layer, head), layout_.key_dim, src);
  }
  void store_value(int64_t layer, int64_t head, int64_t pos, const float* src) {
    store(pos, layout_.value_head_offset(layer, head), layout_.value_dim, src);
  }

  int64_t length = 0;  // positions filled so far
  // Positions the MTP block's layer holds (<= length): MTP at position j needs token j + 1, so it
  // lags the main layers; truncate() and clear() cut it too.
  int64_t mtp_length = 0;
  int64_t max_positions() const { return max_positions_; }
  int64_t bytes_allocated() const;
  int64_t bytes_per_position() const { return layout_.bytes_per_position(); }
  DType format() const { return layout_.format; }

 private:
  StoredRows rows(int64_t pos, int64_t head_offset, int64_t dim);
  void store(int64_t pos, int64_t head_offset, int64_t dim, const float* src);

  KvLayout layout_;
  int64_t max_positions_;
  std::vector<std::unique_ptr<uint8_t[]>> pages_;
};

}  // namespace r1lite
