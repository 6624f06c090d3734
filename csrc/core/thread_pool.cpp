#include "core/thread_pool.h"

#include <chrono>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define R1LITE_PAUSE() _mm_pause()
#else
#define R1LITE_PAUSE() ((void)0)
#endif

namespace r1lite {

namespace {

// A decode step runs a few hundred parallel_for calls of well under a millisecond each: waking
// sleeping threads through the OS for every one of them costs more than the work (measured: q4_0
// decode of the 1.5B shape at 49% of the bandwidth with sleeping workers). So workers spin for a
// while after a job before they sleep, and the caller spins until the chunks are done.
constexpr int kSpinBeforeSleep = 1 << 14;
// Spins between yields while waiting: a thread that waits on another which the OS has
// descheduled gives it the core instead of burning the time slice.
constexpr int kSpinBeforeYield = 1 << 10;
// A call stalls when its wait for other threads' chunks exceeds both kStallMicros and the caller's
// own time in it. kStallsToSolo stalls within kStallWindow parallel calls (an occasional one is
// noise of a quiet machine; under another process's load most calls stall) make the next
// kSoloCalls calls run on the caller alone (a decode step is a few hundred calls).
constexpr int64_t kStallMicros = 300;
constexpr int kStallsToSolo = 2, kStallWindow = 64, kSoloCalls = 512;

int64_t micros_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t).count();
}

// Waits until done() holds: spinning, then yielding the core now and then.
template <class Done>
void wait_until(Done done) {
  for (int i = 0; !done(); ++i) {
    if (i % kSpinBeforeYield == kSpinBeforeYield - 1) std::this_thread::yield();
    else R1LITE_PAUSE();
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    epoch_.fetch_add(2);  // a change every worker sees
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks() {
  for (;;) {
    const int64_t begin = next_.fetch_add(grain_);
    if (begin >= n_) return;
    const int64_t end = begin + grain_ < n_ ? begin + grain_ : n_;
    try {
      (*fn_)(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
    }
    done_.fetch_add(end - begin, std::memory_order_acq_rel);
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  auto changed = [&] { return epoch_.load(std::memory_order_acquire) != seen; };
  for (;;) {
    bool woke = false;
    for (int i = 0; i < kSpinBeforeSleep && !woke; ++i) {
      woke = changed();
      if (!woke) R1LITE_PAUSE();
    }
    if (!woke) {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, changed);
    }
    const uint64_t epoch = epoch_.load(std::memory_order_acquire);
    seen = epoch;
    if (stop_) return;
    if (epoch % 2 == 0) continue;  // between jobs: the one we woke for is already closed
    // Join the job, then make sure it is still open: once closed, its fields may change.
    active_.fetch_add(1, std::memory_order_acq_rel);
    if (epoch_.load(std::memory_order_acquire) == epoch) run_chunks();
    active_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (workers_.empty() || n <= grain) {  // no lock: a task may run a small loop of its own
    fn(0, n);
    return;
  }
  std::unique_lock<std::mutex> call_lock(call_mu_);
  if (solo_calls_ > 0) {
    --solo_calls_;
    call_lock.unlock();
    fn(0, n);
    return;
  }
  fn_ = &fn;
  n_ = n;
  grain_ = grain;
  next_.store(0);
  done_.store(0);
  error_ = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);  // pairs with the sleepers' wait
    epoch_.fetch_add(1, std::memory_order_release);  // open
  }
  wake_.notify_all();
  const auto start = std::chrono::steady_clock::now();
  run_chunks();
  const int64_t own = micros_since(start);
  // Every chunk taken is finished; a worker still waking up finds nothing left to take.
  const auto waiting = std::chrono::steady_clock::now();
  wait_until([&] { return done_.load(std::memory_order_acquire) == n_; });
  const int64_t stalled = micros_since(waiting);
  if (stalled > kStallMicros && stalled > own) ++stalls_;
  if (++window_calls_ == kStallWindow || stalls_ == kStallsToSolo) {
    if (stalls_ == kStallsToSolo) solo_calls_ = kSoloCalls;
    stalls_ = window_calls_ = 0;
  }
  epoch_.fetch_add(1, std::memory_order_acq_rel);  // closed: late workers stay out
  wait_until([&] { return active_.load(std::memory_order_acquire) == 0; });
  fn_ = nullptr;
  if (error_) std::rethrow_exception(error_);
}

}  // namespace r1lite
