#include "model/kv_cache.h"

#include <stdexcept>
#include <string>

namespace r1lite {

KVCache::KVCache(int64_t num_layers, int64_t num_heads, int64_t key_dim, int64_t value_dim,
                 int64_t max_positions)
    : num_layers_(num_layers), num_heads_(num_heads), key_dim_(key_dim), value_dim_(value_dim),
      max_positions_(max_positions) {}

void KVCache::reserve(int64_t n) {
  if (n > max_positions_)
    throw std::invalid_argument("context full: " + std::to_string(n) + " positions requested, " +
                                std::to_string(max_positions_) + " allowed");
  while (int64_t(pages_.size()) * kPagePositions < n)
    pages_.emplace_back(new float[size_t(num_layers_ * layer_floats())]);
}

void KVCache::clear() {
  pages_.clear();
  length = 0;
}

int64_t KVCache::bytes_allocated() const {
  return int64_t(pages_.size()) * num_layers_ * layer_floats() * int64_t(sizeof(float));
}

int64_t KVCache::bytes_per_position() const {
  return num_layers_ * num_heads_ * (key_dim_ + value_dim_) * int64_t(sizeof(float));
}

}  // namespace r1lite
