// What bounds quantized decode on this CPU (BENCHMARKS.md "What bounds decode"): the matrices of
// one decode step of the R1-Distill-Qwen-1.5B shape (28 layers of q/k/v, o, gate/up, down and
// the lm_head; random quants, 0.87 GB at q4_0, 1.64 GB at q8_0), three ways, 2 threads:
//   matmuls:   matmul_many / matmul exactly as a decode step calls them (r1lite's kernels)
//   reads:     the same rows read in the same order (4 rows at a time, 64 bytes per row and
//              step, the same prefetches) with no arithmetic: what the access pattern allows
//   bandwidth: measure_read_bandwidth, the denominator of r1lite bench's percentage
// Nothing here but matmuls: no norms, attention, thread hand-offs between ops or Python.
//
//   S=csrc; g++ -O3 -std=c++17 -I$S -DR1LITE_HAVE_X86=1 -c $S/cpu/matmul_avx512.cpp -mavx512f \
//     -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mfma -mf16c -o /tmp/k512.o && \
//   g++ -O3 -std=c++17 -I$S -DR1LITE_HAVE_X86=1 -c $S/cpu/matmul_avx2.cpp -mavx2 -mfma -mf16c \
//     -o /tmp/k2.o && \
//   g++ -O3 -std=c++17 -mavx512f -I$S -DR1LITE_HAVE_X86=1 tools/decode_matmul_bench.cpp \
//     $S/cpu/matmul.cpp $S/cpu/matmul_scalar.cpp $S/core/*.cpp /tmp/k512.o /tmp/k2.o -lpthread \
//     -o /tmp/decode_matmul_bench && /tmp/decode_matmul_bench q4_0
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "core/bandwidth.h"
#include "core/thread_pool.h"
#include "cpu/matmul.h"

using namespace r1lite;

struct Matrix {
  std::vector<uint8_t> quants;
  std::vector<uint16_t> scales;
  Tensor t;
};

static std::unique_ptr<Matrix> make_matrix(DType dt, int64_t rows, int64_t cols) {
  auto m = std::make_unique<Matrix>();
  const int64_t blocks = cols / 32, row_bytes = dt == DType::Q8_0 ? cols : cols / 2;
  m->quants.resize(size_t(rows * row_bytes));
  m->scales.assign(size_t(rows * blocks), 0x1400);  // f16 0.001
  for (size_t i = 0; i < m->quants.size(); ++i) m->quants[i] = uint8_t((i * 2654435761u) >> 13);
  m->t.data = m->quants.data();
  m->t.scales = m->scales.data();
  m->t.dtype = dt;
  m->t.shape = {rows, cols};
  m->t.scale_shape = {rows, blocks};
  return m;
}

// The tiles' access order without their arithmetic: rows r..r+3 side by side, 64 bytes each per
// step, the next tile's rows prefetched at the same offset and the one after into L2.
static __m512i read_rows(const Tensor& w, int64_t r0, int64_t r1) {
  const auto* q = static_cast<const uint8_t*>(w.data);
  const int64_t stride = w.dtype == DType::Q8_0 ? w.cols() : w.cols() / 2;
  __m512i acc = _mm512_setzero_si512();
  for (int64_t r = r0; r + 4 <= r1; r += 4) {
    for (int64_t k = 0; k < stride; k += 64) {
      for (int i = 0; i < 4; ++i) {
        const uint8_t* row = q + (r + i) * stride + k;
        _mm_prefetch(reinterpret_cast<const char*>(row + 4 * stride), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(row + 8 * stride), _MM_HINT_T1);
        acc = _mm512_or_si512(acc, _mm512_loadu_si512(row));
      }
    }
    const auto* scales = reinterpret_cast<const uint8_t*>(w.scales + r * w.scale_shape[1]);
    for (int64_t k = 0; k < 4 * 2 * w.scale_shape[1]; k += 64)  // the 4 rows' scales, contiguous
      acc = _mm512_or_si512(acc, _mm512_castsi256_si512(_mm256_set1_epi8(char(scales[k]))));
  }
  return acc;
}

int main(int argc, char** argv) {
  const DType dt = argc > 1 && !std::strcmp(argv[1], "q4_0") ? DType::Q4_0 : DType::Q8_0;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 15;
  const int64_t layers = 28, hidden = 1536, ffn = 8960, kv = 256, vocab = 151936;
  ThreadPool pool(2);
  std::vector<std::unique_ptr<Matrix>> mats;
  double bytes = 0;
  auto add = [&](int64_t rows, int64_t cols) {
    mats.push_back(make_matrix(dt, rows, cols));
    bytes += double(mats.back()->quants.size() + 2 * mats.back()->scales.size());
    return &mats.back()->t;
  };
  struct Layer { const Tensor *q, *k, *v, *o, *gate, *up, *down; };
  std::vector<Layer> net;
  for (int64_t l = 0; l < layers; ++l)
    net.push_back({add(hidden, hidden), add(kv, hidden), add(kv, hidden), add(hidden, hidden),
                   add(ffn, hidden), add(ffn, hidden), add(hidden, ffn)});
  const Tensor* head = add(vocab, hidden);

  std::vector<float> x(ffn), a(ffn), b(ffn), c(ffn), logits(vocab);
  for (int64_t i = 0; i < ffn; ++i) x[size_t(i)] = float(i % 13) * 0.1f - 0.6f;
  auto matmuls = [&] {
    for (const Layer& l : net) {
      const Tensor* qkv[] = {l.q, l.k, l.v};
      float* qkv_out[] = {a.data(), b.data(), c.data()};
      matmul_many(pool, x.data(), 1, qkv, qkv_out, 3);
      matmul(pool, x.data(), 1, *l.o, a.data());
      const Tensor* gate_up[] = {l.gate, l.up};
      float* gate_up_out[] = {a.data(), b.data()};
      matmul_many(pool, x.data(), 1, gate_up, gate_up_out, 2);
      matmul(pool, x.data(), 1, *l.down, a.data());
    }
    matmul(pool, x.data(), 1, *head, logits.data());
  };
  volatile int sink = 0;
  auto reads = [&] {  // the same matrices, row ranges split across the threads like matmul's
    for (const auto& m : mats) {
      const int64_t rows = m->t.rows(), grain = std::max<int64_t>(16, rows / 8 / 16 * 16);
      pool.parallel_for((rows + grain - 1) / grain, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t ci = c0; ci < c1; ++ci)
          sink = sink + _mm512_reduce_add_epi32(read_rows(m->t, ci * grain, std::min(rows, (ci + 1) * grain)));
      });
    }
  };
  auto median_rate = [&](auto&& fn) {
    fn();  // warm-up
    std::vector<double> rates;
    for (int s = 0; s < steps; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      rates.push_back(bytes / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(rates.begin(), rates.end());
    return rates[rates.size() / 2];
  };
  const double bw = measure_read_bandwidth(pool, int64_t(1) << 30, 5);
  const double mm = median_rate(matmuls), rd = median_rate(reads);
  std::printf("%s, %.2f GB per step, 2 threads: matmuls %.1f GB/s (%.0f%%), reads %.1f GB/s (%.0f%%), "
              "read bandwidth %.1f GB/s\n", dt == DType::Q8_0 ? "q8_0" : "q4_0", bytes / 1e9,
              mm / 1e9, 100 * mm / bw, rd / 1e9, 100 * rd / bw, bw / 1e9);
  return 0;
}
