// GGUF v2/v3 reader (over mmap) and writer. The reader validates everything before use and
// throws slm::Error naming the file, the stage and the values on any inconsistency.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/dtype.h"
#include "core/mmap_file.h"

namespace slm {

enum class GGUFType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_type_name(GGUFType t);
// Bytes of one value of a fixed-size type (numbers, bool); 0 for strings and arrays.
size_t gguf_type_size(GGUFType t);

// One metadata value. Scalars keep their GGUF type (numbers widened to int64/uint64/double).
// Arrays keep their element type and their elements compactly: numbers and bools as the file's
// little-endian bytes, strings back to back in one buffer. A vocabulary holds 100k+ of each:
// as a variant per element, Llama 3's tokenizer took ~27 MiB of heap; packed, ~7 MiB.
struct GGUFValue {
  GGUFType type = GGUFType::UINT8;
  GGUFType elem_type = GGUFType::UINT8;  // for ARRAY
  std::variant<uint64_t, int64_t, double, bool, std::string> scalar;
  std::vector<uint8_t> raw;         // arrays of numbers and bools: the elements as in the file
  std::string str_blob;             // arrays of strings: the elements back to back
  std::vector<uint64_t> str_ends;   // end of element i in str_blob (it starts where i-1 ends)

  bool is_array() const { return type == GGUFType::ARRAY; }
  size_t array_size() const;
  // Element i of an array of numbers or bools, widened like a scalar (i < array_size()).
  std::variant<uint64_t, int64_t, double, bool, std::string> elem(size_t i) const;
  // Element i of an array of strings (i < array_size()).
  std::string_view str_at(size_t i) const {
    const uint64_t b = i == 0 ? 0 : str_ends[i - 1];
    return std::string_view(str_blob).substr(b, str_ends[i] - b);
  }
  void push_string(std::string_view s) {
    str_blob.append(s);
    str_ends.push_back(str_blob.size());
  }
  bool operator==(const GGUFValue&) const = default;
  // Conversions throw slm::Error when the stored type does not fit.
  int64_t as_int() const;
  uint64_t as_uint() const;
  double as_float() const;
  bool as_bool() const;
  const std::string& as_string() const;
  std::vector<std::string> as_strings() const;
  std::vector<int64_t> as_ints() const;
  std::vector<float> as_floats() const;

  static GGUFValue u32(uint32_t v);
  static GGUFValue i32(int32_t v);
  static GGUFValue u64(uint64_t v);
  static GGUFValue f32(float v);
  static GGUFValue boolean(bool v);
  static GGUFValue str(std::string v);
  static GGUFValue strings(const std::vector<std::string>& v);
  static GGUFValue i32s(const std::vector<int32_t>& v);
  static GGUFValue f32s(const std::vector<float>& v);
  static GGUFValue bytes(std::string_view v);  // an array of UINT8
};

struct TensorInfo {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the contiguous (row) dimension
  uint64_t offset = 0;      // from the start of the data section
  uint64_t nbytes = 0;
  int64_t nelements = 0;
  const uint8_t* data = nullptr;  // into the mapped file
  const MappedFile* file = nullptr;  // the file `data` lies in (MappedFile::read_at)
  uint64_t file_offset = 0;          // of `data` from the start of the file
  int64_t rows() const { int64_t r = 1; for (size_t i = 1; i < ne.size(); ++i) r *= ne[i]; return r; }
};

class GGUFFile {
 public:
  // Opens, maps and validates a file. Throws slm::Error.
  static std::unique_ptr<GGUFFile> open(const std::string& path);
  // The same, then metadata values replaced or added as llama.cpp's --override-kv gives them:
  // "KEY=TYPE:VALUE" with TYPE int, float, bool or str (e.g. a FIM token id a converter left
  // out: tokenizer.ggml.fim_pre_token_id=int:151659). Throws slm::Error naming a malformed one.
  static std::unique_ptr<GGUFFile> open(const std::string& path, const std::vector<std::string>& overrides);

  // A model split into several files by llama.cpp's gguf-split (`slm gguf-split`) opens from
  // any of its parts: the first holds the metadata, and tensors() lists every part's tensors
  // (each TensorInfo names its own file). path() is then the first part's; file_size() the sum.
  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  size_t file_size() const;
  // Maps every tensor's pages now (MappedFile::populate), for a reader about to use them all.
  void populate_tensors() const;
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // of the first part

  // The files a model is stored in: one, or each part of a split model in order.
  struct Part {
    const MappedFile* file;
    uint64_t data_offset;  // where its tensors' data starts
    size_t n_tensors;
  };
  std::vector<Part> parts() const;

  // Metadata, in file order.
  const std::vector<std::pair<std::string, GGUFValue>>& metadata() const { return kv_; }
  const GGUFValue* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Required getters throw "<file>: missing metadata key <key>" when absent.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const GGUFValue& get(const std::string& key) const;
  // Optional getters.
  std::optional<std::string> opt_string(const std::string& key) const;
  std::optional<int64_t> opt_int(const std::string& key) const;
  std::optional<double> opt_float(const std::string& key) const;
  std::optional<bool> opt_bool(const std::string& key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(const std::string& name) const;

 private:
  GGUFFile() = default;
  static std::unique_ptr<GGUFFile> open_part(const std::string& path);
  void parse();
  // Reads the other parts of a split model whose first part this is (split.count > 1).
  void join_parts(int64_t n_split);
  std::unique_ptr<MappedFile> file_;
  std::vector<std::unique_ptr<GGUFFile>> other_parts_;  // split models: parts 2.. in order
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GGUFValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Split models' file names, as llama.cpp makes them: PREFIX-00001-of-00003.gguf for part 0 of 3
// (parts are counted from 0 here, named from 1).
std::string gguf_split_path(const std::string& prefix, int part, int n_parts);
// PREFIX, if `path` is named as part `part` of n_parts; nullopt if it is not.
std::optional<std::string> gguf_split_prefix(const std::string& path, int part, int n_parts);
// The split.* keys gguf-split writes; a merged or rewritten file drops them.
inline constexpr const char* kGGUFSplitKeys[] = {"split.no", "split.count", "split.tensors.count"};

// Writes GGUF v3. Tensor data is copied into the writer (or referenced until write()), or, for
// files too big to hold in memory, declared with add_tensor_info() and produced tensor by
// tensor while write_streamed() writes the file.
class GGUFWriter {
 public:
  void set(const std::string& key, GGUFValue v);  // replaces an existing key, keeps order
  void remove(const std::string& key);
  void add_tensor(const std::string& name, DType type, std::vector<int64_t> ne,
                  const void* data, size_t nbytes, bool copy = true);
  // A tensor whose bytes (row_size(type, ne[0]) * rows) come later, from write_streamed()'s
  // fill callback. Throws slm::Error if ne[0] is not a multiple of the type's block size.
  void add_tensor_info(const std::string& name, DType type, std::vector<int64_t> ne);
  // general.alignment is written with this value (in place if the key was set, else last).
  void set_alignment(uint32_t a) { alignment_ = a; }
  uint32_t alignment() const { return alignment_; }
  size_t tensor_count() const { return tensors_.size(); }
  void write(const std::string& path) const;  // throws slm::Error on I/O failure
  // The serialized file as bytes (used by tests that damage files). Throws slm::Error if a
  // tensor was declared with add_tensor_info().
  std::vector<uint8_t> to_bytes() const;
  // Header size in bytes: everything before the first tensor's data, padding included.
  uint64_t header_size() const;

  // Streams the file to `path`: the header, then each tensor's data in order. Tensors added
  // with data are written from it; for a tensor declared with add_tensor_info(), fill(i, sink)
  // is called and must pass exactly that tensor's bytes to sink, in one or more calls. Only a
  // write buffer is held besides what fill holds. The file is opened before any fill call (so
  // an unwritable path fails before the work); on any error, including one thrown by fill,
  // the partial file is removed and the error propagates (I/O errors throw slm::Error).
  // sink(p, n) appends n bytes; sink.copy_range(fd, offset, n) appends n bytes of another open
  // file, copied inside the kernel (copy_file_range) where it can, as `cp` does: bytes that pass
  // through unchanged (a bf16 checkpoint converted to bf16) never enter this process.
  struct Sink {
    std::function<void(const void* data, size_t nbytes)> write;
    std::function<void(int fd, uint64_t offset, size_t nbytes)> copy_range;
    void operator()(const void* data, size_t nbytes) const { write(data, nbytes); }
  };
  void write_streamed(const std::string& path,
                      const std::function<void(size_t index, const Sink& sink)>& fill) const;

 private:
  struct PendingTensor {
    std::string name; DType type; std::vector<int64_t> ne;
    const void* data; size_t nbytes; std::vector<uint8_t> owned;
    bool streamed = false;  // declared with add_tensor_info(): bytes come from fill
  };
  std::vector<uint8_t> header_bytes() const;
  std::vector<std::pair<std::string, GGUFValue>> kv_;
  std::vector<PendingTensor> tensors_;
  uint32_t alignment_ = 32;
};

}  // namespace slm
