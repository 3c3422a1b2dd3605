#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#ifdef __linux__
#include <sched.h>
#endif

namespace slm {

namespace {
// The chunk [begin, end) of thread t out of n_threads, rounded to whole grains.
std::pair<int64_t, int64_t> chunk_of(int64_t n, int64_t grain, int t, int n_threads) {
  const int64_t grains = (n + grain - 1) / grain;
  const int64_t per = grains / n_threads, extra = grains % n_threads;
  const int64_t g0 = t * per + std::min<int64_t>(t, extra);
  const int64_t g1 = g0 + per + (t < extra ? 1 : 0);
  return {std::min(n, g0 * grain), std::min(n, g1 * grain)};
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// CPUs this process may run on (its affinity mask; a container's cpuset shows there).
int usable_cpus() {
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}
}  // namespace

// Polls done() for up to kSpinMicros (not at all when spin_ is off); true as soon as it
// holds. The clock is read once per 64 polls (a PAUSE is tens of cycles; a clock read, ~20 ns).
template <class Done>
bool ThreadPool::spin_until(Done done) const {
  if (!spin_) return done();
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto yield_from = start + std::chrono::microseconds(kSpinYieldMicros);
  const auto until = start + std::chrono::microseconds(kSpinMicros);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    const auto now = clock::now();
    if (now >= until) return done();
    if (now >= yield_from) std::this_thread::yield();
  }
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads), spin_(n_threads <= usable_cpus()) {
  if (n_threads < 1 || n_threads > 1024) fail("thread count {} must be between 1 and 1024", n_threads);
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back(&ThreadPool::worker, this, i);
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
  }
  start_cv_.notify_all();
  for (auto& w : workers_) w.join();
}

// Sleeping without losing a wake-up: a thread counts itself as sleeping and re-checks its
// condition under mu_; the other side changes the state (seq_cst), then reads the count, and
// when it is non-zero takes mu_ before notifying. Either the sleeper sees the new state, or
// the waker sees the sleeper and its notify comes after the sleeper is waiting.
void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    auto has_job = [&] { return stop_.load() || generation_.load() != seen; };
    if (!spin_until(has_job)) {
      std::unique_lock<std::mutex> lk(mu_);
      sleeping_workers_.fetch_add(1);
      start_cv_.wait(lk, has_job);
      sleeping_workers_.fetch_sub(1);
    }
    if (stop_.load()) return;
    seen = generation_.load();
    run_share(index);
    if (pending_.fetch_sub(1) == 1 && caller_sleeping_.load()) {
      std::lock_guard<std::mutex> lk(mu_);
      done_cv_.notify_one();
    }
  }
}

// Thread `index`'s part of the current job: its fixed chunk, or chunks claimed in turn.
void ThreadPool::run_share(int index) {
  const auto& fn = *job_;
  if (!job_dynamic_) {
    auto [b, e] = chunk_of(job_n_, job_grain_, index, n_threads_);
    if (b < e) fn(b, e, index);
    return;
  }
  for (;;) {
    const int64_t b = next_.fetch_add(job_grain_, std::memory_order_relaxed);
    if (b >= job_n_) return;
    fn(b, std::min(job_n_, b + job_grain_), index);
  }
}

void ThreadPool::parallel_for(int64_t n, Fn fn, int64_t grain) {
  run(n, fn, grain, false);
}

void ThreadPool::parallel_for_dynamic(int64_t n, Fn fn, int64_t chunk) {
  run(n, fn, chunk, true);
}

void ThreadPool::run(int64_t n, const Fn& fn, int64_t grain, bool dynamic) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  if (n_threads_ == 1 || n <= grain) {
    fn(0, n, 0);
    return;
  }
  // The previous job is complete (pending_ reached 0 before the last call returned), so no
  // worker reads these while they change.
  job_ = &fn;
  job_n_ = n;
  job_grain_ = grain;
  job_dynamic_ = dynamic;
  next_.store(0, std::memory_order_relaxed);
  pending_.store(n_threads_ - 1);
  generation_.fetch_add(1);
  if (sleeping_workers_.load() > 0) {
    std::lock_guard<std::mutex> lk(mu_);
    start_cv_.notify_all();
  }
  run_share(0);
  auto all_done = [&] { return pending_.load() == 0; };
  if (!spin_until(all_done)) {
    std::unique_lock<std::mutex> lk(mu_);
    caller_sleeping_.store(true);
    done_cv_.wait(lk, all_done);
    caller_sleeping_.store(false);
  }
}

}  // namespace slm
