// The thread pool: every index is run exactly once, by the chunks each mode promises, over many
// back-to-back calls (the hand-offs spin before they sleep, so a lost wake-up or a worker
// reading the next job too early would show here as a hang or a miscount), after idle gaps
// long enough for the workers to fall asleep, and with more threads than CPUs (no spinning).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

#include "core/thread_pool.h"

// Every allocation of this test program is counted, to check that handing a job to the pool
// allocates nothing (decoding makes ~200 parallel_for calls a token).
namespace {
std::atomic<long> g_allocations{0};
}
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

using slm::ThreadPool;

// Runs one parallel_for (or parallel_for_dynamic) over n and checks the coverage.
void check_once(ThreadPool& pool, int64_t n, int64_t grain, bool dynamic) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::atomic<bool> bad_range{false}, bad_thread{false};
  auto fn = [&](int64_t b, int64_t e, int thread) {
    if (b < 0 || e > n || b >= e || (dynamic && b % grain != 0)) bad_range = true;
    if (thread < 0 || thread >= pool.size()) bad_thread = true;
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
  };
  if (dynamic) pool.parallel_for_dynamic(n, fn, grain);
  else pool.parallel_for(n, fn, grain);
  ASSERT_FALSE(bad_range) << "n " << n << " grain " << grain;
  ASSERT_FALSE(bad_thread);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "index " << i << " of " << n;
}

TEST(ThreadPool, EveryIndexOnceInBothModes) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 7, 64, 1000}) {
      for (int64_t grain : {1, 3, 16}) {
        check_once(pool, n, grain, false);
        check_once(pool, n, grain, true);
      }
    }
  }
}

TEST(ThreadPool, ManyCallsBackToBack) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int call = 0; call < 20000; ++call) {
    auto fn = [&](int64_t b, int64_t e, int) { sum.fetch_add(e - b); };
    if (call % 2) pool.parallel_for(16, fn);
    else pool.parallel_for_dynamic(16, fn, 2);
  }
  EXPECT_EQ(sum.load(), 20000 * 16);
}

TEST(ThreadPool, WakesSleepingWorkers) {
  ThreadPool pool(2);
  for (int round = 0; round < 3; ++round) {
    // Longer than the spin: the worker is asleep on the condition variable by now.
    std::this_thread::sleep_for(std::chrono::microseconds(3 * ThreadPool::kSpinMicros));
    std::atomic<int> ran_on_worker{0};
    pool.parallel_for(2, [&](int64_t, int64_t, int thread) {
      if (thread == 1) ran_on_worker.fetch_add(1);
    });
    EXPECT_EQ(ran_on_worker.load(), 1) << "round " << round;
  }
}

TEST(ThreadPool, MoreThreadsThanCpus) {
  const int threads = static_cast<int>(std::thread::hardware_concurrency()) * 2 + 1;
  ThreadPool pool(threads);
  const auto start = std::chrono::steady_clock::now();
  for (int call = 0; call < 200; ++call) check_once(pool, 4 * threads, 1, call % 2 == 1);
  // Spinning threads on oversubscribed CPUs made each call wait for time slices (seconds in
  // all); sleeping ones take a few milliseconds.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST(ThreadPool, HandingOutAJobAllocatesNothing) {
  ThreadPool pool(2);
  std::vector<double> a(64, 1.0), b(64, 2.0), c(64);
  double scale = 3.0, offset = 0.5;
  int64_t calls = 0;
  pool.parallel_for(64, [&](int64_t, int64_t, int) {});  // warm up
  const long before = g_allocations.load();
  for (int i = 0; i < 1000; ++i) {
    // A closure of six references: std::function would have allocated for it every call.
    pool.parallel_for(64, [&](int64_t lo, int64_t hi, int) {
      for (int64_t j = lo; j < hi; ++j) c[j] = a[j] * scale + b[j] + offset + static_cast<double>(calls);
    });
    pool.parallel_for_dynamic(64, [&](int64_t lo, int64_t hi, int) {
      for (int64_t j = lo; j < hi; ++j) c[j] += a[j] * scale - b[j] * offset;
    }, 8);
    ++calls;
  }
  EXPECT_EQ(g_allocations.load(), before);
  EXPECT_DOUBLE_EQ(c[5], 3.0 + 2.0 + 0.5 + 999 + 3.0 - 1.0);
}

TEST(ThreadPool, RejectsBadThreadCounts) {
  EXPECT_ANY_THROW(ThreadPool(0));
  EXPECT_ANY_THROW(ThreadPool(100000));
}

}  // namespace
