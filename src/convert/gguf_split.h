// slm gguf-split: a model split into several GGUF files, or such parts merged back into one,
// as llama.cpp's llama-gguf-split does it, so each tool reads the other's files. The first part
// holds the metadata and every part names itself (split.no, split.count, split.tensors.count);
// GGUFFile::open reads a split model from any of its parts.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace slm {
class GGUFFile;
}

namespace slm::convert {

struct SplitOptions {
  int max_tensors = 128;         // tensors per part (llama-gguf-split's default)
  uint64_t max_bytes = 0;        // if set: tensor data per part instead, each padded to the alignment
  bool no_tensor_first_split = false;  // the first part holds the metadata only
};

struct SplitPart {
  std::string path;
  std::vector<size_t> tensors;  // indices into the input's tensor list, in order
  uint64_t bytes = 0;           // the file's size once written (header and data)
};

// The parts `in` would be written as: PREFIX-00001-of-0000N.gguf and so on. A tensor bigger
// than max_bytes gets a part of its own. Throws slm::Error for a limit below 1 or more than
// 9999 parts.
std::vector<SplitPart> plan_split(const GGUFFile& in, const std::string& out_prefix, const SplitOptions& opts);

// Writes the planned parts (none of them may exist: an old part left beside new ones would be
// read as one of them). On any error the parts written so far are removed. Throws slm::Error.
void write_split(const GGUFFile& in, const std::vector<SplitPart>& parts, bool progress);

// Writes every tensor and the metadata of the split model `in` (opened from any part) into one
// file, without the split.* keys. Throws slm::Error if `in` is not split or `out_path` exists.
void merge_split(const GGUFFile& in, const std::string& out_path, bool progress);

}  // namespace slm::convert
