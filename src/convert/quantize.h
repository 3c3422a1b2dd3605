// slm quantize: an F32/F16/BF16 GGUF model to one of llama-quantize's mixes (Q4_K_M, Q8_0, ...),
// giving the same per-tensor types, tensor order, metadata and (for the reference encoders that
// llama.cpp uses without an importance matrix) the same bytes as llama-quantize.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "convert/quant_mix.h"
#include "core/dtype.h"

namespace slm::convert {

struct QuantizeOptions {
  int n_threads = 1;
  bool progress = true;  // a progress bar on stderr
};

struct PlannedTensor {
  size_t source_index = 0;  // in the input file's tensor list
  std::string name;
  std::vector<int64_t> ne;
  DType from = DType::F32, to = DType::F32;
  bool fallback = false;
  uint64_t out_bytes = 0;
};

struct QuantizePlan {
  const QuantMix* mix = nullptr;
  std::vector<PlannedTensor> tensors;  // in output order
  uint64_t out_data_bytes = 0;         // padded tensor data
  int n_fallback = 0;
};

struct QuantizeReport {
  QuantizePlan plan;
  uint64_t in_file_bytes = 0, out_file_bytes = 0;
  double seconds = 0;
};

// The tensor types and order for quantizing `in` (opened) with `type`. Throws slm::Error for
// an unknown type (listing the valid ones) or an input that is already quantized.
QuantizePlan plan_quantization(const GGUFFile& in, const std::string& type);

// Writes `out_path`. Throws slm::Error (unknown type, quantized input, unreadable input,
// unwritable output, non-finite weights); no partial output file is left behind.
QuantizeReport quantize_file(const std::string& in_path, const std::string& out_path,
                             const std::string& type, const QuantizeOptions& opts);

}  // namespace slm::convert
