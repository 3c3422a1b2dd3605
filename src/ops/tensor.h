// Read-only views of weight matrices inside the mapped GGUF file.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/gguf.h"

namespace slm {

struct PackedSlot;  // ops/compute.h

// A 2-D weight W[n_out][n_in], row-major in its storage type (rows of n_in values).
struct Weight {
  std::string name;
  DType type = DType::F32;
  int64_t n_in = 0;
  int64_t n_out = 0;
  const uint8_t* data = nullptr;
  size_t row_bytes = 0;
  // The file `data` lies in and its offset there (null for weights built by hand): matmul and
  // get_rows read a model's weights with pread where that keeps pages out of our memory.
  const MappedFile* file = nullptr;
  uint64_t file_offset = 0;
  // Where matmul keeps this matrix repacked for the SIMD kernels: shared by every copy of the
  // Weight, so it belongs to the model (not to a session) and goes with it. Set by from() for
  // weights in a file; null for weights built by hand
  // (matmul then keeps the repacked copy in its ComputeContext and leaves the data alone).
  std::shared_ptr<PackedSlot> packed;

  explicit operator bool() const { return data != nullptr; }
  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
  static Weight from(const TensorInfo& t);
};

// Decode a whole 1-D or 2-D tensor to floats (norm weights, biases, rope factors).
std::vector<float> tensor_to_floats(const TensorInfo& t);

}  // namespace slm
