// A persistent pool of worker threads. parallel_for splits [0, n) into one contiguous chunk
// per thread and runs them at once; the calling thread takes chunk 0, so a pool of 1 runs
// everything inline. parallel_for_dynamic deals out chunks to whichever thread is free.
//
// Hand-offs spin before they sleep. Decoding one token of a 1B model is ~200 parallel_for
// calls a few microseconds apart; waking a sleeping worker through a futex cost ~25 us each
// on the team's VM (benches/bench_pool.cpp: 25 us -> 0.6 us per empty call), 13% of decoding
// time. So a worker that finishes a job polls for the next one for up to kSpinMicros, and the
// caller polls for the workers' completion likewise, before either falls back to a condition
// variable: an idle pool (a chat waiting for the user, a server between requests) still sleeps.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace slm {

// A non-owning reference to a callable: what parallel_for takes instead of std::function,
// which heap-allocates closures over 16 bytes (a lambda capturing three references), so that
// decoding allocates nothing per token. Safe because parallel_for returns only when the work
// is done: a lambda written in the call outlives it.
template <class Sig>
class FunctionRef;
template <class R, class... A>
class FunctionRef<R(A...)> {
 public:
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f)  // NOLINT(google-explicit-constructor): lambdas convert at call sites
      : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, A... a) -> R { return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...); }) {}
  R operator()(A... a) const { return call_(obj_, std::forward<A>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, A...);
};

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // fn(begin, end, thread_index) over chunks of [0, n); chunks are multiples of `grain`.
  // One caller at a time (the pool belongs to one ComputeContext).
  using Fn = FunctionRef<void(int64_t, int64_t, int)>;
  void parallel_for(int64_t n, Fn fn, int64_t grain = 1);
  // fn(begin, end, thread_index) over chunks of `chunk` taken in turn by whichever thread is
  // free, so a thread slowed down (by the VM, by a busier memory channel) takes fewer. For
  // memory-bound loops of equal-cost chunks: decoding's matrix-vector products.
  void parallel_for_dynamic(int64_t n, Fn fn, int64_t chunk);

  // How long a hand-off polls before it sleeps: long enough to cover the gaps between the
  // products of one forward pass and the sampling between two tokens, short enough that an
  // idle pool stops using the CPU at once.
  // Only a pool with at most one thread per CPU it may run on spins: more threads than CPUs
  // spinning would hold the CPUs the working threads wait for (-t 4 on two cores decoded at
  // 1.7 tok/s). Past kSpinYieldMicros a polling thread also yields, so that another process
  // on the same cores gets them.
  static constexpr int64_t kSpinMicros = 2000;
  static constexpr int64_t kSpinYieldMicros = 50;

 private:
  void worker(int index);
  void run(int64_t n, const Fn& fn, int64_t grain, bool dynamic);
  void run_share(int index);
  template <class Done>
  bool spin_until(Done done) const;
  int n_threads_;
  bool spin_;  // n_threads_ <= the CPUs this process may use
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  // The job: written by the caller before it publishes a new generation_ (release), read by
  // the workers after they see it (acquire).
  const Fn* job_ = nullptr;
  int64_t job_n_ = 0, job_grain_ = 1;
  bool job_dynamic_ = false;
  // The next unclaimed index of a dynamic job, on its own cache line.
  alignas(64) std::atomic<int64_t> next_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  // Threads inside (or entering) a condition-variable wait; a publisher that sees none
  // skips the mutex and the futex call.
  std::atomic<int> sleeping_workers_{0};
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stop_{false};
};

}  // namespace slm
