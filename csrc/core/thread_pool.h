// A fixed pool of worker threads. parallel_for splits [0, n) into chunks that the workers and
// the calling thread take from a shared counter, and returns when every chunk is done.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace r1lite {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // n_threads counts the caller: 1 = no workers
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  // fn(begin, end) over disjoint ranges covering [0, n); ranges are `grain` long (the last may
  // be shorter). Calls from several threads at once are serialized.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop();
  void run_chunks();

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one parallel_for at a time
  std::mutex mu_;                         // guards sleeping on wake_
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};   // bumped for every job (and to stop)
  std::atomic<int> busy_workers_{0};      // workers still on the current job
  bool stop_ = false;

  // The job being run.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, grain_ = 1;
  std::atomic<int64_t> next_{0};
  std::exception_ptr error_;
};

}  // namespace r1lite
