// This level's kernel table (see kernels/kernels.h), handed to kernels/dispatch.cpp.
#include "kernels/x86/simd.h"

namespace slm::kern::SLM_ISA_NS {

void register_panels_basic(Kernels& k);
void register_panels_k(Kernels& k);
void register_panels_b32(Kernels& k);
void register_panels_k23(Kernels& k);
void register_panels_f16(Kernels& k);
void register_attention(Kernels& k);
void register_rows(Kernels& k);
void register_sgemm(Kernels& k);

namespace {

Kernels build(bool bf16) {
  Kernels k{};
#if defined(SLM_ISA_VNNI)
  k.isa = Isa::Avx512Vnni;
#elif defined(__AVX512F__)
  k.isa = Isa::Avx512;
#else
  k.isa = Isa::Avx2;
#endif
  k.quantize_q8_0 = &quantize_q8_0;
  k.quantize_q8_K = &quantize_q8_K;
  register_panels_basic(k);
  register_panels_k(k);
  register_panels_b32(k);
  register_panels_k23(k);
  register_panels_f16(k);
  register_float(k, bf16);
  register_attention(k);
  register_rows(k);
  register_sgemm(k);
  return k;
}

}  // namespace

// Called by the dispatcher only once the CPU is known to support this level: the tables are
// built by code compiled for it.
const Kernels* table(bool bf16) {
  static const Kernels with_bf16 = build(true);
  static const Kernels without_bf16 = build(false);
  return bf16 ? &with_bf16 : &without_bf16;
}

}  // namespace slm::kern::SLM_ISA_NS
