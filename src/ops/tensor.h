// Read-only views of weight matrices inside the mapped GGUF file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/gguf.h"

namespace slm {

// A 2-D weight W[n_out][n_in], row-major in its storage type (rows of n_in values).
struct Weight {
  std::string name;
  DType type = DType::F32;
  int64_t n_in = 0;
  int64_t n_out = 0;
  const uint8_t* data = nullptr;
  size_t row_bytes = 0;

  explicit operator bool() const { return data != nullptr; }
  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
  static Weight from(const TensorInfo& t);
};

// Decode a whole 1-D or 2-D tensor to floats (norm weights, biases, rope factors).
std::vector<float> tensor_to_floats(const TensorInfo& t);

}  // namespace slm
