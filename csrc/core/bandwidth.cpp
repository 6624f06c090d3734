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
      // A plain reduction (vectorized by the compiler, so bound by memory, not by the adds) with
      // software prefetch a few KB ahead, as the matmul kernels do: a single stream without it
      // reaches about half of what the memory delivers.
      uint64_t s = 0;
      constexpr int64_t kAhead = 512;  // words (4 KB)
      for (int64_t i = b; i < e; i += 8) {
        __builtin_prefetch(&buf[size_t(std::min(i + kAhead, words - 1))]);
        const int64_t end = std::min(i + 8, e);
        for (int64_t j = i; j < end; ++j) s ^= buf[size_t(j)];
      }
      sink = sink + s;
    });
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (secs > 0 && double(words * 8) / secs > best) best = double(words * 8) / secs;
  }
  return best;
}

}  // namespace r1lite
