// The quantization "mixes" of llama-quantize (Q4_K_M, Q8_0, ...): which ggml type each tensor
// gets, the LLAMA_FTYPE id stored as general.file_type, and the order llama.cpp writes tensors
// in. A port of llama.cpp's src/llama-quant.cpp (llama_tensor_get_type and its helpers,
// without an importance matrix), so that our files have the same per-tensor types and sizes
// as theirs.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/gguf.h"

namespace slm::convert {

struct QuantMix {
  const char* name;      // as llama-quantize spells it, e.g. "Q4_K_M"
  uint32_t ftype;        // llama.cpp's LLAMA_FTYPE_MOSTLY_* value (general.file_type)
  DType default_type;    // the type of most matrices
  const char* summary;   // for the help text
};

// The mixes slm can write, in llama-quantize's listing order.
const std::vector<QuantMix>& quant_mixes();
// Case-insensitive; accepts llama-quantize's aliases (Q3_K = Q3_K_M, Q4_K = Q4_K_M,
// Q5_K = Q5_K_M). Null when unknown.
const QuantMix* find_quant_mix(std::string_view name);
// "Q4_0, Q4_1, ..." for error messages.
std::string quant_mix_names();

// What the type rules look at besides tensor names: read from the model's metadata the way
// llama.cpp's hparams would have them.
struct MixModelInfo {
  std::string arch;
  int64_t n_layer = 0;    // <arch>.block_count
  int64_t n_head = 0;     // of layer 0
  int64_t n_head_kv = 0;  // of layer 0
  int64_t n_expert = 0;
  bool is_70b = false;    // llama.cpp's LLM_TYPE_70B (llama, 80 layers, GQA): attn_v gets more bits
  int64_t n_gqa() const { return n_head_kv > 0 ? n_head / n_head_kv : 0; }
  static MixModelInfo from_gguf(const GGUFFile& f);
};

struct TensorDesc {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> ne;
};

// llama.cpp's tensor order in files it writes (its weights_map comparator): tensors outside
// the layers first, then layer by layer by number, by name (byte order) within each group.
// Returns indexes into `names`.
std::vector<size_t> llama_tensor_order(const std::vector<std::string>& names);

// Whether llama-quantize would quantize this tensor at all (2-D+ weights except norms,
// positional embeddings, routers and a few small special tensors); others are copied.
bool tensor_allows_quantization(const TensorDesc& t);

struct TypeChoice {
  DType type = DType::F32;
  bool fallback = false;  // the mix's type did not fit the row length; a compatible one was used
};

// The output type of each tensor, `tensors` being in file order (llama_tensor_order): the
// rules count attn_v and ffn_down tensors as they go.
std::vector<TypeChoice> choose_tensor_types(const std::vector<TensorDesc>& tensors,
                                            const QuantMix& mix, const MixModelInfo& info);

}  // namespace slm::convert
