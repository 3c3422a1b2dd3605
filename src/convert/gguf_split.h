// slm gguf-split: a model split into several GGUF files, or such parts merged back into one,
// as llama.cpp's llama-gguf-split does it, so each tool reads the other's files. The first part
// holds the metadata and every part names itself (split.no, split.count, split.tensors.count);
// GGUFFile::open reads a split model from any of its parts.
#pragma once
#include <cstdint>
#include <functional>
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

// The parts of `in` laid out as the split model `like` lays them out: each tensor in the part
// the tensor of its name lies in there, in `in`'s order; what llama-quantize --keep-split writes
// for a split input. Throws slm::Error where `like` is not split or lacks one of the tensors.
std::vector<SplitPart> plan_split_like(const GGUFFile& in, const GGUFFile& like, const std::string& out_prefix);

// llama-gguf-split's --split-max-size: "500M" or "2G", decimal megabytes or gigabytes, in bytes.
// Throws slm::Error naming the value otherwise.
uint64_t parse_split_size(const std::string& s);

// "model.gguf" -> "model": the prefix a tool that writes parts names them by (llama-quantize
// --keep-split and convert_hf_to_gguf.py both drop the extension).
std::string split_prefix_of(const std::string& out_path);

// A model just written whole to `tmp_path`, written again as the parts `plan` lays out for it and
// then removed; where the plan has a single part, the file is renamed to `whole_path` instead
// (as convert_hf_to_gguf.py writes a model that fits one part: one plain file). Returns the parts
// written (empty: the whole file). On an error `tmp_path` is removed and no part is left.
std::vector<SplitPart> split_written_model(const std::string& tmp_path, const std::string& whole_path,
                                           const std::function<std::vector<SplitPart>(const GGUFFile&)>& plan,
                                           bool progress);

// Writes every tensor and the metadata of the split model `in` (opened from any part) into one
// file, without the split.* keys. Throws slm::Error if `in` is not split or `out_path` exists.
void merge_split(const GGUFFile& in, const std::string& out_path, bool progress);

}  // namespace slm::convert
