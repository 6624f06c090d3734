#include "core/bandwidth.h"

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
      // A plain reduction: the compiler vectorizes it, so the loop is bound by memory, not adds.
      uint64_t s = 0;
      for (int64_t i = b; i < e; ++i) s ^= buf[size_t(i)];
      sink = sink + s;
    });
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (secs > 0 && double(words * 8) / secs > best) best = double(words * 8) / secs;
  }
  return best;
}

}  // namespace r1lite
