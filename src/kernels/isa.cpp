// CPU feature detection for the kernel dispatcher. Compiled for baseline x86-64 (like all of
// slm_core): it must run on any CPU, including ones that lack every level it asks about.
#include "kernels/isa.h"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define SLM_X86_HOST 1
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#define SLM_LINUX_X86_64 1
#endif

namespace slm::kern {

namespace {

struct Features {
  bool avx2 = false, avx512 = false, vnni = false, bf16 = false;
  bool amx_cpu = false;  // AMX-TILE + AMX-INT8 + AMX-BF16 (on top of vnni)
  bool amx_os = false;   // XCR0 has the tile config and tile data states
};

#ifdef SLM_X86_HOST
// XCR0: which register states the OS saves on a context switch. Read with the raw opcode's
// mnemonic so this file needs no -mxsave.
uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

Features probe() {
  Features f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
             f16c = c & (1u << 29);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;     // SSE and AVX state
  const bool os_zmm = (xcr0 & 0xE6) == 0xE6;   // + opmask, ZMM0-15 upper halves, ZMM16-31
  if (!os_ymm) return f;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const bool avx2 = b & (1u << 5);
  const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31);
  const bool avx512vnni = c & (1u << 11);
  const unsigned max_sub = a;
  const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24), amx_int8 = d & (1u << 25);
  bool avx512bf16 = false;
  if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) avx512bf16 = a & (1u << 5);
  f.avx2 = avx2 && fma && f16c;
  f.avx512 = f.avx2 && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
  f.vnni = f.avx512 && avx512vnni;
  f.bf16 = f.vnni && avx512bf16;
  f.amx_cpu = f.vnni && amx_tile && amx_int8 && amx_bf16;
  f.amx_os = f.amx_cpu && (xcr0 & (3ull << 17)) == (3ull << 17);
  return f;
}
#else
Features probe() { return {}; }
#endif

const Features& features() {
  static const Features f = probe();
  return f;
}

// Linux hands out the tile data state (8 KiB per thread) only to processes that ask for it;
// without the permission the first tile instruction faults (SIGILL).
AmxStatus probe_amx() {
  const Features& f = features();
  if (!f.amx_cpu) return AmxStatus::NoCpu;
  if (!f.amx_os) return AmxStatus::NoOs;
#ifdef SLM_LINUX_X86_64
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0) return AmxStatus::Ready;
#endif
  return AmxStatus::Refused;
}

// -1: not decided yet. Relaxed is enough: every thread computes the same answer.
std::atomic<int> g_active{-1};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Vnni: return "avx512vnni";
    case Isa::Amx: return "amx";
  }
  return "?";
}

bool parse_isa(const char* name, Isa* out) {
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Amx}) {
    if (std::strcmp(name, isa_name(i)) == 0) {
      *out = i;
      return true;
    }
  }
  return false;
}

Isa detected_isa() {
#ifndef SLM_HAVE_X86_KERNELS
  return Isa::Scalar;  // nothing to dispatch to in this build
#else
  const Features& f = features();
  if (f.vnni && f.amx_cpu) {
    if (amx_status() == AmxStatus::Ready) return Isa::Amx;
    // The CPU has tiles but this process may not use them: say so once, go on without.
    static const bool said = [] {
      std::fprintf(stderr, "slm: AMX is %s; using avx512vnni\n", amx_status_text());
      return true;
    }();
    (void)said;
  }
  if (f.vnni) return Isa::Avx512Vnni;
  if (f.avx512) return Isa::Avx512;
  if (f.avx2) return Isa::Avx2;
  return Isa::Scalar;
#endif
}

bool isa_supported(Isa isa) {
#ifdef SLM_HAVE_X86_KERNELS
  if (isa == Isa::Amx) return amx_status() == AmxStatus::Ready;
#endif
  return static_cast<int>(isa) <= static_cast<int>(detected_isa());
}

AmxStatus amx_status() {
  static const AmxStatus s = probe_amx();
  return s;
}

const char* amx_status_text() {
  switch (amx_status()) {
    case AmxStatus::NoCpu: return "not on this CPU (no amx_tile/amx_int8/amx_bf16)";
    case AmxStatus::NoOs: return "on this CPU, but the OS does not save the tile state (XCR0)";
    case AmxStatus::Refused: return "on this CPU, but the kernel refused the tile state (arch_prctl)";
    case AmxStatus::Ready: return "ready (long batches on the tile unit)";
  }
  return "?";
}

bool cpu_has_bf16() { return features().bf16; }

namespace {
// Why isa_supported(isa) is false, for the errors of forcing a level.
std::string why_unsupported(Isa isa) {
  if (isa == Isa::Amx) return std::string("AMX is ") + amx_status_text();
  return std::string("this CPU (or this build) supports at most ") + isa_name(detected_isa());
}
}  // namespace

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v >= 0) return static_cast<Isa>(v);
  Isa isa = detected_isa();
  if (const char* env = std::getenv("SLM_FORCE_ISA"); env && *env) {
    Isa forced;
    if (!parse_isa(env, &forced))
      fail("SLM_FORCE_ISA={}: unknown instruction set (use scalar, avx2, avx512, avx512vnni or amx)", env);
    if (!isa_supported(forced)) fail("SLM_FORCE_ISA={}: {}", env, why_unsupported(forced));
    isa = forced;
  }
  g_active.store(static_cast<int>(isa), std::memory_order_relaxed);
  return isa;
}

void set_active_isa(Isa isa) {
  if (!isa_supported(isa)) fail("instruction set {} is not available: {}", isa_name(isa), why_unsupported(isa));
  g_active.store(static_cast<int>(isa), std::memory_order_relaxed);
}

}  // namespace slm::kern
