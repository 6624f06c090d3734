#include "model/kv_cache.h"

#include <stdexcept>
#include <string>

namespace r1lite {

void KVCache::reserve(int64_t n) {
  if (n > max_positions_)
    throw std::invalid_argument("context full: " + std::to_string(n) + " positions requested, " +
                                std::to_string(max_positions_) + " allowed");
  while (int64_t(pages_.size()) * kPagePositions < n)
    pages_.emplace_back(new float[size_t(layout_.page_floats())]);
}

void KVCache::clear() {
  pages_.clear();
  length = 0;
}

int64_t KVCache::bytes_allocated() const {
  return int64_t(pages_.size()) * layout_.page_floats() * int64_t(sizeof(float));
}

}  // namespace r1lite
