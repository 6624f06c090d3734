// A plain memory read benchmark: the ceiling a memory-bound decode step can reach.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"

namespace r1lite {

// Reads a buffer of `bytes` `repeats` times with every thread of the pool; returns the best
// bytes/second seen over the repeats.
double measure_read_bandwidth(ThreadPool& pool, int64_t bytes, int repeats);

}  // namespace r1lite
