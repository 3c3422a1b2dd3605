// Reading Hugging Face safetensors checkpoints through the project's mmap: one file, or shards
// listed by model.safetensors.index.json. Every header is validated before any tensor is used
// (header length inside the file, offsets inside the data area, shape x dtype size == byte
// length, no two tensors overlapping), so a damaged or truncated download fails with one
// slm::Error naming the file and the tensor instead of reading past a mapping.
//
// Layout of a file: u64 little-endian header length N, N bytes of JSON
//   {"<name>": {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {...}}
// then the data area; offsets are relative to its start (byte 8 + N).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mmap_file.h"

namespace slm::convert {

struct StTensor {
  std::string name;
  std::string dtype;            // as the header spells it: "F32", "F16", "BF16", "I64", ...
  size_t elem_size = 0;         // bytes per element
  std::vector<int64_t> shape;   // row-major, PyTorch order (shape[0] is the slowest dimension)
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  uint64_t file_offset = 0;     // of `data` from the start of the file
  const MappedFile* file = nullptr;

  int64_t nelements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  // The floating-point dtypes a converter can read (F32, F16, BF16).
  bool is_float() const { return dtype == "F32" || dtype == "F16" || dtype == "BF16"; }
};

// Decodes elements [first, first + n) of an F32/F16/BF16 tensor into floats (exactly: every
// F16 and BF16 value is a float). Throws slm::Error for any other dtype, naming the tensor.
void st_read_floats(const StTensor& t, int64_t first, int64_t n, float* dst);

// One .safetensors file, mapped and validated.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);  // throws slm::Error
  const std::string& path() const { return file_->path(); }
  // In the order of their data (the order the writer laid them out).
  const std::vector<StTensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::unique_ptr<MappedFile> file_;
  std::vector<StTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A whole checkpoint folder: model.safetensors, or the shards named by
// model.safetensors.index.json (each must exist, hold exactly the tensors the index gives it,
// and no tensor may appear twice), or, without an index, every model*.safetensors file.
class Checkpoint {
 public:
  static Checkpoint open_dir(const std::string& dir);  // throws slm::Error
  // Tensors of all files: file by file (sorted by file name), each file in data order.
  const std::vector<const StTensor*>& tensors() const { return order_; }
  const StTensor* find(const std::string& name) const;
  const std::vector<std::string>& files() const { return file_names_; }
  uint64_t total_bytes() const;  // of tensor data

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<std::string> file_names_;
  std::vector<const StTensor*> order_;
  std::map<std::string, const StTensor*> by_name_;
};

}  // namespace slm::convert
