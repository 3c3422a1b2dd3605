// The traits table: ggml's type ids, names and block sizes, plus our reference kernels for the
// types we can decode. Sizes are listed even for types we cannot decode, so the GGUF reader can
// check tensor byte counts of any file ggml would accept.
#include "core/dtype.h"

#include <array>

#include "kernels/ref/quants.h"

namespace slm {
namespace {

using namespace slm::ref;

TypeTraits sized(const char* name, int64_t block_size, size_t type_size) {
  TypeTraits t;
  t.name = name;
  t.block_size = block_size;
  t.type_size = type_size;
  t.known = true;
  return t;
}

TypeTraits codec(const char* name, int64_t block_size, size_t type_size, ToFloatFn to,
                 FromFloatFn from, DType dot_type, VecDotFn dot) {
  TypeTraits t = sized(name, block_size, type_size);
  t.to_float = to;
  t.from_float = from;
  t.vec_dot_type = dot_type;
  t.vec_dot = dot;
  return t;
}

std::array<TypeTraits, kDTypeIdLimit> build_table() {
  std::array<TypeTraits, kDTypeIdLimit> t{};
  auto at = [&](DType d) -> TypeTraits& { return t[static_cast<uint32_t>(d)]; };

  at(DType::F32) = codec("f32", 1, 4, to_float_f32, from_float_f32, DType::F32, vec_dot_f32);
  at(DType::F16) = codec("f16", 1, 2, to_float_f16, from_float_f16, DType::F16, vec_dot_f16);
  at(DType::BF16) =
      codec("bf16", 1, 2, to_float_bf16, from_float_bf16, DType::BF16, vec_dot_bf16);
  at(DType::Q4_0) = codec("q4_0", kQK4_0, sizeof(BlockQ4_0), to_float_q4_0, from_float_q4_0,
                          DType::Q8_0, vec_dot_q4_0_q8_0);
  at(DType::Q4_1) = codec("q4_1", kQK4_1, sizeof(BlockQ4_1), to_float_q4_1, from_float_q4_1,
                          DType::Q8_1, vec_dot_q4_1_q8_1);
  at(DType::Q5_0) = codec("q5_0", kQK5_0, sizeof(BlockQ5_0), to_float_q5_0, from_float_q5_0,
                          DType::Q8_0, vec_dot_q5_0_q8_0);
  at(DType::Q5_1) = codec("q5_1", kQK5_1, sizeof(BlockQ5_1), to_float_q5_1, from_float_q5_1,
                          DType::Q8_1, vec_dot_q5_1_q8_1);
  at(DType::Q8_0) = codec("q8_0", kQK8_0, sizeof(BlockQ8_0), to_float_q8_0, from_float_q8_0,
                          DType::Q8_0, vec_dot_q8_0_q8_0);
  // Q8_1 and Q8_K are activation types only: ggml has no dot product with them as the weight.
  at(DType::Q8_1) = codec("q8_1", kQK8_1, sizeof(BlockQ8_1), to_float_q8_1, from_float_q8_1,
                          DType::Q8_1, nullptr);
  at(DType::Q2_K) = codec("q2_K", kQK_K, sizeof(BlockQ2_K), to_float_q2_K, from_float_q2_K,
                          DType::Q8_K, vec_dot_q2_K_q8_K);
  at(DType::Q3_K) = codec("q3_K", kQK_K, sizeof(BlockQ3_K), to_float_q3_K, from_float_q3_K,
                          DType::Q8_K, vec_dot_q3_K_q8_K);
  at(DType::Q4_K) = codec("q4_K", kQK_K, sizeof(BlockQ4_K), to_float_q4_K, from_float_q4_K,
                          DType::Q8_K, vec_dot_q4_K_q8_K);
  at(DType::Q5_K) = codec("q5_K", kQK_K, sizeof(BlockQ5_K), to_float_q5_K, from_float_q5_K,
                          DType::Q8_K, vec_dot_q5_K_q8_K);
  at(DType::Q6_K) = codec("q6_K", kQK_K, sizeof(BlockQ6_K), to_float_q6_K, from_float_q6_K,
                          DType::Q8_K, vec_dot_q6_K_q8_K);
  at(DType::Q8_K) = codec("q8_K", kQK_K, sizeof(BlockQ8_K), to_float_q8_K, from_float_q8_K,
                          DType::Q8_K, nullptr);
  at(DType::IQ4_NL) = codec("iq4_nl", kQK4_NL, sizeof(BlockIQ4_NL), to_float_iq4_nl,
                            from_float_iq4_nl, DType::Q8_0, vec_dot_iq4_nl_q8_0);
  at(DType::IQ4_XS) = codec("iq4_xs", kQK_K, sizeof(BlockIQ4_XS), to_float_iq4_xs,
                            from_float_iq4_xs, DType::Q8_K, vec_dot_iq4_xs_q8_K);

  // Known sizes, no kernels yet (byte counts from ggml-common.h).
  at(DType::IQ2_XXS) = sized("iq2_xxs", kQK_K, 2 + kQK_K / 8 * 2);
  at(DType::IQ2_XS) = sized("iq2_xs", kQK_K, 2 + kQK_K / 8 * 2 + kQK_K / 32);
  at(DType::IQ3_XXS) = sized("iq3_xxs", kQK_K, 2 + 3 * (kQK_K / 8));
  at(DType::IQ1_S) = sized("iq1_s", kQK_K, 2 + kQK_K / 8 + kQK_K / 16);
  at(DType::IQ3_S) = sized("iq3_s", kQK_K, 2 + kQK_K / 4 + kQK_K / 32 + kQK_K / 8 + kQK_K / 64);
  at(DType::IQ2_S) = sized("iq2_s", kQK_K, 2 + kQK_K / 4 + kQK_K / 16);
  at(DType::IQ1_M) = sized("iq1_m", kQK_K, kQK_K / 8 + kQK_K / 16 + kQK_K / 32);
  at(DType::I8) = sized("i8", 1, 1);
  at(DType::I16) = sized("i16", 1, 2);
  at(DType::I32) = sized("i32", 1, 4);
  at(DType::I64) = sized("i64", 1, 8);
  at(DType::F64) = sized("f64", 1, 8);
  at(DType::TQ1_0) = sized("tq1_0", kQK_K, 2 + kQK_K / 64 + (kQK_K - 4 * kQK_K / 64) / 5);
  at(DType::TQ2_0) = sized("tq2_0", kQK_K, 2 + kQK_K / 4);
  // 39 is ggml's MXFP4 (gpt-oss): an E8M0 exponent byte and 16 bytes of 4-bit values.
  t[39] = sized("mxfp4", 32, 17);
  // Ids 4 and 5 (old Q4_2/Q4_3) and 31..33, 36..38 (repacked layouts that are never stored in
  // files) stay unknown.
  for (TypeTraits& tt : t) tt.from_float_act = tt.from_float;
  at(DType::Q8_0).from_float_act = from_float_q8_0_x86;
  at(DType::Q8_1).from_float_act = from_float_q8_1_x86;
  return t;
}

const std::array<TypeTraits, kDTypeIdLimit>& table() {
  static const std::array<TypeTraits, kDTypeIdLimit> t = build_table();
  return t;
}

}  // namespace

const TypeTraits& type_traits(uint32_t id) {
  static const TypeTraits unknown{};
  if (id >= kDTypeIdLimit) return unknown;
  return table()[id];
}

std::string dtype_name(DType t) {
  const TypeTraits& tr = type_traits(t);
  if (tr.known) return tr.name;
  return "type#" + std::to_string(static_cast<uint32_t>(t));
}

size_t row_size(DType t, int64_t n) {
  const TypeTraits& tr = type_traits(t);
  if (!tr.known || tr.block_size <= 0) return 0;
  return static_cast<size_t>(n / tr.block_size) * tr.type_size;
}

}  // namespace slm
