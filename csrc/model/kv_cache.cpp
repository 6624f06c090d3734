#include "model/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace r1lite {

void KVCache::reserve(int64_t n) {
  if (n > max_positions_)
    throw std::invalid_argument("context full: " + std::to_string(n) + " positions requested, " +
                                std::to_string(max_positions_) + " allowed");
  while (int64_t(pages_.size()) * kPagePositions < n)
    pages_.emplace_back(new uint8_t[size_t(layout_.page_bytes())]);
}

void KVCache::clear() {
  pages_.clear();
  length = mtp_length = 0;
}

void KVCache::truncate(int64_t n) {
  if (n < 0 || n > length)
    throw std::invalid_argument("cannot truncate a sequence of " + std::to_string(length) +
                                " positions to " + std::to_string(n));
  // GQA keys/values and MLA latent rows alike live in the pages: rows past n are simply
  // overwritten when fed again.
  pages_.resize(size_t((n + kPagePositions - 1) / kPagePositions));
  length = n;
  mtp_length = std::min(mtp_length, n);
}

std::unique_ptr<KVCache> KVCache::copy_prefix(int64_t n) const {
  if (n < 0 || n > length)
    throw std::invalid_argument("cannot copy " + std::to_string(n) + " positions of a sequence of " +
                                std::to_string(length));
  auto out = std::make_unique<KVCache>(layout_, max_positions_);
  out->reserve(n);
  const size_t page = size_t(layout_.page_bytes());
  for (size_t i = 0; i < out->pages_.size(); ++i) std::memcpy(out->pages_[i].get(), pages_[i].get(), page);
  out->length = n;
  out->mtp_length = std::min(mtp_length, n);
  return out;
}

int64_t KVCache::bytes_allocated() const { return int64_t(pages_.size()) * layout_.page_bytes(); }

StoredRows KVCache::rows(int64_t pos, int64_t head_offset, int64_t dim) {
  uint8_t* head = pages_[size_t(pos / kPagePositions)].get() + head_offset;
  const int64_t row = pos % kPagePositions, row_bytes = layout_.row_bytes(dim);
  StoredRows r;
  r.format = layout_.format;
  r.data = head + row * row_bytes;
  r.ld = layout_.format == DType::Q8_0 ? row_bytes : dim;
  if (layout_.format == DType::Q8_0)
    r.scales = reinterpret_cast<const uint16_t*>(head + kPagePositions * row_bytes + row * layout_.scale_bytes(dim));
  return r;
}

void KVCache::store(int64_t pos, int64_t head_offset, int64_t dim, const float* src) {
  const StoredRows r = rows(pos, head_offset, dim);
  encode_row(layout_.format, src, dim, const_cast<void*>(r.data), const_cast<uint16_t*>(r.scales));
}

}  // namespace r1lite
