// Which x86 instruction-set level the SIMD kernels run at. Shipped builds target plain x86-64;
// the kernels are compiled once per level (src/kernels/x86/, see CMakeLists.txt) and the best
// level this CPU and OS support is picked once, at first use.
#pragma once
namespace slm::kern {

enum class Isa : int {
  Scalar = 0,      // the reference kernels of kernels/ref only
  Avx2 = 1,        // AVX2 + FMA + F16C
  Avx512 = 2,      // AVX-512 F + BW + DQ + VL
  Avx512Vnni = 3,  // the above + AVX512_VNNI (+ AVX512_BF16 where present, see cpu_has_bf16)
  // avx512vnni + AMX tile products for long batches (AMX-TILE, -INT8 and -BF16, with the tile
  // state granted by the kernel; kernels/x86_amx/panels_amx.cpp). detected_isa() picks it
  // where amx_status() is Ready; where the CPU has tiles the process may not use, it says so
  // on stderr once and picks avx512vnni.
  Amx = 4,
};

// "scalar", "avx2", "avx512", "avx512vnni", "amx".
const char* isa_name(Isa isa);
// Parses an isa_name(); false if `name` is none of them.
bool parse_isa(const char* name, Isa* out);

// The best level the CPU implements and the OS saves the registers of (CPUID + XGETBV).
// Always Scalar on non-x86 hosts or when the build has no SIMD kernels.
Isa detected_isa();
// Whether this CPU can run kernels of level `isa` (every level up to detected_isa(), and amx
// where amx_status() is AmxStatus::Ready).
bool isa_supported(Isa isa);
// What this CPU and OS offer of AMX: the tile instructions (CPUID), the OS saving the tile
// state (XCR0) and this process's permission to use it (arch_prctl ARCH_REQ_XCOMP_PERM,
// requested once, at the first call).
enum class AmxStatus { NoCpu, NoOs, Refused, Ready };
AmxStatus amx_status();
// One line for `slm info` and the logs: "not on this CPU", "ready (SLM_FORCE_ISA=amx)", ...
const char* amx_status_text();
// AVX512_BF16 (VDPBF16PS), used by the avx512vnni level's bf16 products when present.
bool cpu_has_bf16();

// The level in use: SLM_FORCE_ISA if set (an unknown name or a level this CPU lacks is a
// clear slm::Error, raised at the first call), otherwise detected_isa().
Isa active_isa();
// Switch the level in use (tests and benchmarks compare levels in one process). Throws
// slm::Error if the CPU lacks it. Not thread-safe against running kernels: call between
// computations.
void set_active_isa(Isa isa);

}  // namespace slm::kern
