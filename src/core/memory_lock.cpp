#include "core/memory_lock.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace slm {

namespace {
std::atomic<bool> g_enabled{false};
std::atomic<uint64_t> g_locked{0};
std::atomic<int> g_failures{0};

uintptr_t page_size() { return static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE)); }
}  // namespace

void enable_memory_lock() { g_enabled.store(true); }
bool memory_lock_enabled() { return g_enabled.load(); }
uint64_t memory_locked_bytes() { return g_locked.load(); }
int memory_lock_failures() { return g_failures.load(); }

bool lock_memory(const void* p, size_t n, const char* what) {
  if (!g_enabled.load() || p == nullptr || n == 0) return true;
  const uintptr_t page = page_size(), a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t first = a / page * page, last = (a + n + page - 1) / page * page;
  if (::mlock(reinterpret_cast<const void*>(first), last - first) == 0) {
    g_locked.fetch_add(last - first);
    return true;
  }
  const int err = errno;
  if (g_failures.fetch_add(1) == 0)
    std::fprintf(stderr,
                 "slm: warning: --mlock: could not lock %.1f MiB of %s in memory (%s; %.1f MiB locked before it): "
                 "raise the limit (`ulimit -l unlimited` as root, LimitMEMLOCK= for a service) or run without "
                 "--mlock; going on unlocked\n",
                 static_cast<double>(last - first) / (1 << 20), what, std::strerror(err),
                 static_cast<double>(g_locked.load()) / (1 << 20));
  return false;
}

void unlock_memory(const void* p, size_t n) {
  if (!g_enabled.load() || p == nullptr || n == 0) return;
  const uintptr_t page = page_size(), a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t first = (a + page - 1) / page * page, last = (a + n) / page * page;
  if (first < last && ::munlock(reinterpret_cast<const void*>(first), last - first) == 0) {
    const uint64_t was = g_locked.load();
    g_locked.fetch_sub(std::min<uint64_t>(was, last - first));
  }
}

}  // namespace slm
