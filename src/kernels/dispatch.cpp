// Picks the kernel table of the active instruction-set level. Each level's table is built by
// its own copy of src/kernels/x86/ (namespace slm::kern::<level>).
#include "core/dtype.h"
#include "kernels/kernels.h"

namespace slm::kern {

static_assert(kTypeSlots == static_cast<int>(kDTypeIdLimit));

#ifdef SLM_HAVE_X86_KERNELS
namespace avx2 { const Kernels* table(bool bf16); }
namespace avx512 { const Kernels* table(bool bf16); }
namespace avx512vnni {
const Kernels* table(bool bf16);
const Kernels* table_amx(bool bf16);
const Kernels* table_amx_emulated(bool bf16);
}  // namespace avx512vnni
#endif

const Kernels* for_isa(Isa isa) {
  static const Kernels scalar{};
  if (!isa_supported(isa)) return nullptr;
  switch (isa) {
    case Isa::Scalar: return &scalar;
#ifdef SLM_HAVE_X86_KERNELS
    case Isa::Avx2: return avx2::table(false);
    case Isa::Avx512: return avx512::table(false);
    case Isa::Avx512Vnni: return avx512vnni::table(cpu_has_bf16());
    case Isa::Amx: return avx512vnni::table_amx(cpu_has_bf16());
#else
    default: break;
#endif
  }
  return nullptr;
}

const Kernels& active() { return *for_isa(active_isa()); }

const Kernels* amx_kernels(bool emulated) {
  if (!emulated) return for_isa(Isa::Amx);
#ifdef SLM_HAVE_X86_KERNELS
  if (!isa_supported(Isa::Avx512Vnni)) return nullptr;
  return avx512vnni::table_amx_emulated(cpu_has_bf16());
#else
  return nullptr;
#endif
}

}  // namespace slm::kern
