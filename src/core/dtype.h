// Tensor element types with ggml's ids and block layouts. Quantization is a weight type:
// each type has a reference decoder, encoder and a dot product against the activation
// type ggml pairs it with (vec_dot_type), so results match llama.cpp block for block.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace slm {

enum class DType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35,
};
constexpr uint32_t kDTypeIdLimit = 40;  // ids at or above this are unknown to the reader

// Decode n values (n a multiple of block_size) from packed blocks into floats.
using ToFloatFn = void (*)(const void* src, float* dst, int64_t n);
// Encode n floats (n a multiple of block_size) into packed blocks (reference rounding).
using FromFloatFn = void (*)(const float* src, void* dst, int64_t n);
// Dot product of n values: x in this type, y in the type's vec_dot_type.
using VecDotFn = float (*)(int64_t n, const void* x, const void* y);

struct TypeTraits {
  const char* name = nullptr;  // ggml's name, e.g. "q4_K"
  int64_t block_size = 0;      // values per block
  size_t type_size = 0;        // bytes per block
  bool known = false;          // the GGUF reader accepts it (sizes known)
  ToFloatFn to_float = nullptr;      // null: we cannot decode this type yet
  FromFloatFn from_float = nullptr;  // null: we cannot encode this type (reference rounding)
  // Encoder for activations fed to vec_dot: llama.cpp's x86 builds quantize activations for
  // Q8_0/Q8_1 with slightly different rounding than the reference encoder used for weights;
  // matching it keeps our logits bit-close to theirs. Equals from_float for other types.
  FromFloatFn from_float_act = nullptr;
  DType vec_dot_type = DType::F32;
  VecDotFn vec_dot = nullptr;
};

// Traits for an id read from a file; `known` is false for ids we do not recognise.
const TypeTraits& type_traits(uint32_t id);
inline const TypeTraits& type_traits(DType t) { return type_traits(static_cast<uint32_t>(t)); }
std::string dtype_name(DType t);
// Bytes taken by n values of type t (n a multiple of the block size).
size_t row_size(DType t, int64_t n);

}  // namespace slm
