// A fixed pool of worker threads. parallel_for splits [0, n) into chunks that the workers and
// the calling thread take from a shared counter, and returns when every chunk is done.
//
// On a busy machine a worker can be descheduled at any moment. The caller therefore waits only
// for chunks that were taken, never for a worker that has not joined the job: whoever is running
// takes the chunks, and a late worker finds the job closed and goes back to waiting. Waits spin
// briefly, then yield the core (to the descheduled thread that may need it), then sleep. A chunk
// that a descheduled worker took still has to be waited for: when that wait keeps costing more
// than the caller's own share of the work in several recent calls (another process holds the
// cores), the next calls run on the caller alone for a while, then the workers are tried again.
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
  std::mutex mu_;                    // guards sleeping on wake_
  std::condition_variable wake_;
  // Odd while a job is open to workers, even between jobs; bumped to open and to close each job.
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int> active_{0};       // workers inside the open job (they read its fields)
  bool stop_ = false;

  // The job being run: written only while no worker is inside one (epoch even, active_ 0).
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, grain_ = 1;
  std::atomic<int64_t> next_{0};     // first index not yet taken
  std::atomic<int64_t> done_{0};     // indices finished
  std::exception_ptr error_;

  int solo_calls_ = 0;    // calls left to run on the caller alone (the workers kept it waiting)
  int stalls_ = 0, window_calls_ = 0;  // stalled calls among the parallel calls of this window
};

}  // namespace r1lite
