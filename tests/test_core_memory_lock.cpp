// llama.cpp's --mlock (core/memory_lock.h): a model file mapped after it is enabled is locked in
// memory (the kernel's own count, VmLck in /proc/self/status, says so), a range the repacking
// releases is unlocked first, and a lock the system refuses is reported, never fatal. Each
// test runs in a process of its own (ctest), so enabling the lock touches no other test.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "core/memory_lock.h"
#include "core/mmap_file.h"
#include "support/fixtures.h"
#include "support/run_cli.h"

namespace {

// Locked memory of this process in bytes, as the kernel counts it.
uint64_t vm_locked() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmLck:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

TEST(MemoryLock, AMappedModelIsLockedAndItsReleasedPagesUnlocked) {
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer replaces mlock and munlock with calls that do nothing.
  GTEST_SKIP() << "under AddressSanitizer mlock does nothing (the release build checks the lock)";
#endif
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const uint64_t before = vm_locked();
  {
    slm::MappedFile off(model.string());  // not enabled yet: nothing locked
    EXPECT_EQ(vm_locked(), before);
  }
  slm::enable_memory_lock();
  slm::MappedFile f(model.string());
  if (slm::memory_lock_failures() > 0) {
    // The system refused (RLIMIT_MEMLOCK): reported on stderr, the file still readable.
    std::printf("  the system refused the lock (ulimit -l); checked that the file maps anyway\n");
    EXPECT_EQ(f.data()[0], 'G');
    return;
  }
  const uint64_t locked = vm_locked() - before;
  std::printf("  %zu-byte file: %llu bytes locked\n", f.size(), static_cast<unsigned long long>(locked));
  EXPECT_GE(locked, f.size());
  EXPECT_GE(slm::memory_locked_bytes(), f.size());
  f.release(0, f.size());  // what repacking does to a weight's rows
  EXPECT_LT(vm_locked() - before, locked / 2);
  EXPECT_EQ(f.data()[0], 'G');  // released pages come back from the file when read
}

// The command line: --mlock anywhere, as llama.cpp takes it; `--timings` says how much was
// locked (or that the system refused).
TEST(MemoryLock, CommandLineTakesMlock) {
  SLM_REQUIRE_FIXTURE(model, "models/stories260K.gguf");
  const auto r = slm::test::run_cli(
      {"run", "--mlock", "-m", model.string(), "-p", "Once upon a time", "-n", "8", "--temp", "0", "--timings"}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("ignored"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("MiB locked in memory"), std::string::npos) << r.err;
  const auto plain = slm::test::run_cli({"run", "-m", model.string(), "-p", "Once upon a time", "-n", "8", "--temp", "0"}, 60);
  EXPECT_EQ(r.out, plain.out);
}

}  // namespace
