// llama.cpp's --mlock: keep the model in RAM (never paged out or compressed). Once enabled,
// every model file mapped after it (MappedFile) and every repacked copy of a weight (ops.cpp)
// is locked with mlock(2); a range of the mapping that repacking releases is unlocked first,
// so that the copy replaces the file's pages in locked memory as it does in resident memory.
// A lock the system refuses (RLIMIT_MEMLOCK, `ulimit -l`) is reported once on stderr with
// what to do, and the run goes on unlocked: what llama.cpp does.
#pragma once
#include <cstddef>
#include <cstdint>

namespace slm {

void enable_memory_lock();
bool memory_lock_enabled();
// Locks [p, p + n) if enabled (whole pages around it); false if the system refused (reported).
bool lock_memory(const void* p, size_t n, const char* what);
// Unlocks the whole pages inside [p, p + n) if enabled.
void unlock_memory(const void* p, size_t n);
// Bytes locked so far and locks refused, for the tests and `--timings`.
uint64_t memory_locked_bytes();
int memory_lock_failures();

}  // namespace slm
