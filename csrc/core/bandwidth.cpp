#include "core/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>

namespace r1lite {

double measure_read_bandwidth(ThreadPool& pool, int64_t bytes, int repeats) {
  const int64_t words = bytes / 8;
  std::unique_ptr<uint64_t[]> buf(new uint64_t[size_t(words)]);
  pool.parallel_for(words, 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) buf[size_t(i)] = uint64_t(i);  // touch every page
  });
  double best = 0.0;
  volatile uint64_t sink = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t chunk = (words + pool.size() - 1) / pool.size();
    pool.parallel_for(words, chunk, [&](int64_t b, int64_t e) {
      // Four streams at once (each thread's range cut in four), as a matmul reads several weight
      // rows at once: one stream alone reaches only about half of what the memory delivers.
      const int64_t q = (e - b) / 4;
      const uint64_t* p0 = &buf[size_t(b)];
      uint64_t s = 0;
      constexpr int64_t kAhead = 256;  // words: prefetch 2 KB ahead in each stream
      for (int64_t i = 0; i < q; i += 8) {
        for (int k = 0; k < 4; ++k) __builtin_prefetch(p0 + std::min(i + kAhead + k * q, e - b - 1));
        const int64_t end = std::min(i + 8, q);
        for (int64_t j = i; j < end; ++j) s ^= p0[j] ^ p0[j + q] ^ p0[j + 2 * q] ^ p0[j + 3 * q];
      }
      for (int64_t i = b + 4 * q; i < e; ++i) s ^= buf[size_t(i)];
      sink = sink + s;
    });
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (secs > 0 && double(words * 8) / secs > best) best = double(words * 8) / secs;
  }
  return best;
}

}  // namespace r1lite
