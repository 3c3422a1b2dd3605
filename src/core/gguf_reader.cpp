// GGUF reader: parses and validates the header, metadata and tensor infos of a mapped file.
// Every length and count is checked against the bytes that remain before it is used, so a
// damaged file produces an error that names the stage, never an over-read or a huge allocation.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "core/gguf.h"
#include "core/ollama_store.h"

namespace slm {

namespace {

constexpr uint32_t kMaxDims = 4;

class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* data, size_t size)
      : path_(path), data_(data), size_(size) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  void need(size_t n, const std::string& what) const {
    if (n > remaining())
      fail("{}: {}: needs {} bytes at offset {} but the file ends at {} (truncated file?)", path_,
           what, n, pos_, size_);
  }
  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  // The next n bytes, which must lie inside the file.
  const uint8_t* take(size_t n, const std::string& what) {
    need(n, what);
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  std::string read_string(const std::string& what) { return std::string(read_view(what)); }
  // A string's bytes in place (valid while the file is mapped).
  std::string_view read_view(const std::string& what) {
    // The length's own description is composed only on failure: this runs for each of the
    // 400k strings of a Llama 3 vocabulary.
    if (remaining() < sizeof(uint64_t)) need(sizeof(uint64_t), what + " (string length)");
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      fail("{}: {}: string length {} at offset {} runs past the end of the file (size {})", path_,
           what, len, pos_ - 8, size_);
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }
  void seek(size_t pos) { pos_ = pos; }

 private:
  const std::string& path_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// The fewest bytes a value of type t takes in a file.
size_t scalar_size(GGUFType t) {
  if (const size_t w = gguf_type_size(t)) return w;
  return t == GGUFType::STRING ? 8 : 12;  // a string's length prefix; an array's type + count
}

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GGUFType::FLOAT64); }

using Scalar = std::variant<uint64_t, int64_t, double, bool, std::string>;

Scalar read_scalar(Cursor& c, GGUFType t, const std::string& what) {
  switch (t) {
    case GGUFType::UINT8: return static_cast<uint64_t>(c.read<uint8_t>(what));
    case GGUFType::INT8: return static_cast<int64_t>(c.read<int8_t>(what));
    case GGUFType::UINT16: return static_cast<uint64_t>(c.read<uint16_t>(what));
    case GGUFType::INT16: return static_cast<int64_t>(c.read<int16_t>(what));
    case GGUFType::UINT32: return static_cast<uint64_t>(c.read<uint32_t>(what));
    case GGUFType::INT32: return static_cast<int64_t>(c.read<int32_t>(what));
    case GGUFType::UINT64: return c.read<uint64_t>(what);
    case GGUFType::INT64: return c.read<int64_t>(what);
    case GGUFType::FLOAT32: return static_cast<double>(c.read<float>(what));
    case GGUFType::FLOAT64: return c.read<double>(what);
    case GGUFType::BOOL: {
      uint8_t b = c.read<uint8_t>(what);
      return b != 0;
    }
    case GGUFType::STRING: return c.read_string(what);
    case GGUFType::ARRAY: break;
  }
  fail("internal: read_scalar on type {}", static_cast<uint32_t>(t));
}

}  // namespace

std::unique_ptr<GGUFFile> GGUFFile::open_part(const std::string& path) {
  std::unique_ptr<GGUFFile> f(new GGUFFile());
  f->file_ = std::make_unique<MappedFile>(path);
  f->parse();
  // Everything in the header now lives in our own structures: let the kernel drop its pages
  // from this process (a Llama 3 vocabulary is 7.5 MiB of them).
  f->file_->release(0, f->data_offset_);
  return f;
}

std::unique_ptr<GGUFFile> GGUFFile::open(const std::string& path) {
  // Not a file but a model ollama has pulled, by its name (llama3.2:1b)? Its blob, then.
  if (const std::string file = model_file(path); file != path) return open(file);
  std::unique_ptr<GGUFFile> f = open_part(path);
  // llama.cpp's merge leaves split.count at 0 and a file never split has none: one file.
  // (opt_int throws, naming the file and key, for a value that is not an integer.)
  const int64_t n_split = f->opt_int("split.count").value_or(0);
  if (n_split <= 1) return f;
  if (n_split > 9999) fail("{}: split.count {} is out of range (1..9999)", path, n_split);
  const int64_t part = f->opt_int("split.no").value_or(0);
  if (part < 0 || part >= n_split)
    fail("{}: split.no {} is out of range for a model split into {} files", path, part, n_split);
  if (part != 0) {
    // Another part than the first: the metadata is in the first, which the name leads to.
    const auto prefix = gguf_split_prefix(path, static_cast<int>(part), static_cast<int>(n_split));
    if (!prefix)
      fail("{}: this is part {} of a model split into {} files, and its name does not end in "
           "-{:05}-of-{:05}.gguf as gguf-split names them, so the first part cannot be found; "
           "open the first part instead",
           path, part + 1, n_split, part + 1, n_split);
    f = open_part(gguf_split_path(*prefix, 0, static_cast<int>(n_split)));
    if (f->opt_int("split.count") != n_split)
      fail("{}: part {} of {} ({}) leads here, but this file does not say it is split into {} files",
           f->path(), part + 1, n_split, path, n_split);
  }
  f->join_parts(n_split);
  return f;
}

void GGUFFile::join_parts(int64_t n_split) {
  const std::string& first = path();
  const int n = static_cast<int>(n_split);
  if (opt_int("split.no").value_or(0) != 0) fail("{}: split.no must be 0 in the first part of a split model", first);
  const auto prefix = gguf_split_prefix(first, 0, n);
  if (!prefix)
    fail("{}: this is the first part of a model split into {} files, and its name does not end in "
         "-00001-of-{:05}.gguf as gguf-split names them, so the other parts cannot be found; give "
         "the parts their original names",
         first, n, n);
  for (int i = 1; i < n; ++i) {
    const std::string part_path = gguf_split_path(*prefix, i, n);
    std::error_code ec;
    if (!std::filesystem::exists(part_path, ec))
      fail("{}: part {} of {} of this split model, {}, is missing: a split model needs all its files "
           "side by side (or merge them into one with `slm gguf-split --merge`)",
           first, i + 1, n, part_path);
    std::unique_ptr<GGUFFile> part = open_part(part_path);
    const std::optional<int64_t> part_no = part->opt_int("split.no"), part_count = part->opt_int("split.count");
    if (part_no != i || part_count != n_split)
      fail("{}: expected part {} of {} of {}, but it says split.no = {}, split.count = {} (parts of "
           "different splits mixed up?)",
           part_path, i + 1, n, first, part_no ? std::to_string(*part_no) : "none",
           part_count ? std::to_string(*part_count) : "none");
    for (TensorInfo& t : part->tensors_) {
      if (tensor_index_.count(t.name))
        fail("{}: tensor {} is also in an earlier part of the split model", part_path, t.name);
      tensor_index_[t.name] = tensors_.size();
      tensors_.push_back(t);  // its data and file point into the part, which we keep
    }
    other_parts_.push_back(std::move(part));
  }
  if (const std::optional<int64_t> total = opt_int("split.tensors.count"); total && *total != static_cast<int64_t>(tensors_.size()))
    fail("{}: the split model says it has {} tensors, but its {} parts hold {}", first, *total, n, tensors_.size());
}

size_t GGUFFile::file_size() const {
  size_t total = file_->size();
  for (const auto& p : other_parts_) total += p->file_->size();
  return total;
}

void GGUFFile::populate_tensors() const {
  file_->populate(data_offset_, file_->size() - data_offset_);
  for (const auto& p : other_parts_) p->populate_tensors();
}

std::vector<GGUFFile::Part> GGUFFile::parts() const {
  std::vector<Part> out{{file_.get(), data_offset_, tensors_.size()}};
  for (const auto& p : other_parts_) {
    out.push_back({p->file_.get(), p->data_offset_, p->tensors_.size()});
    out[0].n_tensors -= p->tensors_.size();
  }
  return out;
}

std::string gguf_split_path(const std::string& prefix, int part, int n_parts) {
  return fmt::format("{}-{:05}-of-{:05}.gguf", prefix, part + 1, n_parts);
}

std::optional<std::string> gguf_split_prefix(const std::string& path, int part, int n_parts) {
  const std::string suffix = fmt::format("-{:05}-of-{:05}.gguf", part + 1, n_parts);
  if (path.size() <= suffix.size() || path.compare(path.size() - suffix.size(), suffix.size(), suffix) != 0)
    return std::nullopt;
  return path.substr(0, path.size() - suffix.size());
}

std::unique_ptr<GGUFFile> GGUFFile::open(const std::string& path, const std::vector<std::string>& overrides) {
  std::unique_ptr<GGUFFile> f = open(path);
  for (const std::string& o : overrides) {
    const size_t eq = o.find('='), colon = o.find(':', eq == std::string::npos ? 0 : eq);
    auto bad = [&o](const char* why) {
      fail("--override-kv '{}': {}; write KEY=TYPE:VALUE with TYPE int, float, bool or str "
           "(e.g. tokenizer.ggml.add_bos_token=bool:false)", o, why);
    };
    if (eq == std::string::npos || eq == 0 || colon == std::string::npos) bad("not of the form KEY=TYPE:VALUE");
    const std::string key = o.substr(0, eq), type = o.substr(eq + 1, colon - eq - 1), value = o.substr(colon + 1);
    GGUFValue v;
    if (type == "str") {
      v = GGUFValue::str(value);
    } else if (type == "bool") {
      if (value != "true" && value != "false") bad("a bool is true or false");
      v = GGUFValue::boolean(value == "true");
    } else if (type == "int" || type == "float") {
      size_t used = 0;
      try {
        if (type == "int") {
          v.type = GGUFType::INT64;
          v.scalar = static_cast<int64_t>(std::stoll(value, &used));
        } else {
          v.type = GGUFType::FLOAT64;
          v.scalar = std::stod(value, &used);
        }
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != value.size()) bad(type == "int" ? "the value is not an integer" : "the value is not a number");
    } else {
      bad("unknown TYPE");
    }
    if (auto it = f->kv_index_.find(key); it != f->kv_index_.end()) {
      f->kv_[it->second].second = std::move(v);
    } else {
      f->kv_index_[key] = f->kv_.size();
      f->kv_.emplace_back(key, std::move(v));
    }
  }
  return f;
}

void GGUFFile::parse() {
  const std::string& p = file_->path();
  Cursor c(p, file_->data(), file_->size());
  if (file_->size() < 4) fail("{}: not a GGUF file: only {} bytes", p, file_->size());
  char magic[4];
  std::memcpy(magic, file_->data(), 4);
  if (std::memcmp(magic, "GGUF", 4) != 0)
    fail("{}: not a GGUF file: bad magic {:02x} {:02x} {:02x} {:02x} (expected 'GGUF')", p,
         (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2], (uint8_t)magic[3]);
  c.read<uint32_t>("reading magic");
  version_ = c.read<uint32_t>("reading header version");
  if (version_ != 2 && version_ != 3)
    fail("{}: unsupported GGUF version {} (slm reads versions 2 and 3)", p, version_);
  const uint64_t n_tensors = c.read<uint64_t>("reading header tensor count");
  const uint64_t n_kv = c.read<uint64_t>("reading header metadata count");
  // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at
  // least 8 + 4 + 4 + 8 bytes: counts beyond that cannot be real.
  if (n_kv > c.remaining() / 13)
    fail("{}: header says {} metadata entries, more than the {} bytes left can hold", p, n_kv,
         c.remaining());
  if (n_tensors > c.remaining() / 24)
    fail("{}: header says {} tensors, more than the {} bytes left can hold", p, n_tensors,
         c.remaining());

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string stage = fmt::format("reading metadata entry {} of {}", i, n_kv);
    std::string key = c.read_string(stage + " (key)");
    stage = fmt::format("reading metadata key '{}'", key);
    const uint32_t type_id = c.read<uint32_t>(stage + " (type)");
    if (!valid_value_type(type_id))
      fail("{}: {}: unknown value type id {}", p, stage, type_id);
    GGUFValue v;
    v.type = static_cast<GGUFType>(type_id);
    if (v.type == GGUFType::ARRAY) {
      const uint32_t elem_id = c.read<uint32_t>(stage + " (array element type)");
      if (!valid_value_type(elem_id))
        fail("{}: {}: unknown array element type id {}", p, stage, elem_id);
      v.elem_type = static_cast<GGUFType>(elem_id);
      if (v.elem_type == GGUFType::ARRAY)
        fail("{}: {}: nested arrays are not supported", p, stage);
      const uint64_t n = c.read<uint64_t>(stage + " (array length)");
      if (n > c.remaining() / scalar_size(v.elem_type))
        fail("{}: {}: array of {} {} values does not fit in the {} bytes left", p, stage, n,
             gguf_type_name(v.elem_type), c.remaining());
      if (v.elem_type == GGUFType::STRING) {
        // Two passes: the total length first, so that the packed buffer is allocated once
        // (growing it took a third of loading a Llama 3 vocabulary in copies).
        const size_t start = c.pos();
        size_t total = 0;
        for (uint64_t j = 0; j < n; ++j) total += c.read_view(stage).size();
        c.seek(start);
        v.str_blob.reserve(total);
        v.str_ends.reserve(static_cast<size_t>(n));
        for (uint64_t j = 0; j < n; ++j) v.push_string(c.read_view(stage));
      } else {
        // Fixed-size elements: kept as the file's bytes (the length check above bounds them).
        const size_t bytes = static_cast<size_t>(n) * gguf_type_size(v.elem_type);
        const uint8_t* p = c.take(bytes, stage);
        v.raw.assign(p, p + bytes);
      }
    } else {
      v.scalar = read_scalar(c, v.type, stage);
    }
    if (kv_index_.count(key)) fail("{}: duplicate metadata key '{}'", p, key);
    kv_index_[key] = kv_.size();
    kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GGUFValue* a = find("general.alignment")) {
    if (a->is_array() || a->type == GGUFType::STRING)
      fail("{}: general.alignment must be an integer, found {}", p, gguf_type_name(a->type));
    int64_t al = 0;
    try {
      al = a->as_int();  // throws for floats, bools and uint64 values above INT64_MAX
    } catch (const Error& e) {
      fail("{}: general.alignment: {}", p, e.what());
    }
    if (al <= 0 || (al & (al - 1)) != 0 || al > (1 << 20))
      fail("{}: general.alignment {} is not a power of two between 1 and 2^20", p, al);
    alignment_ = static_cast<uint64_t>(al);
  }

  tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    std::string stage = fmt::format("reading tensor info {} of {}", i, n_tensors);
    TensorInfo t;
    t.name = c.read_string(stage + " (name)");
    stage = fmt::format("reading tensor {}", t.name);
    const uint32_t n_dims = c.read<uint32_t>(stage + " (dimension count)");
    if (n_dims == 0 || n_dims > kMaxDims)
      fail("{}: {}: {} dimensions (must be 1..{})", p, stage, n_dims, kMaxDims);
    t.ne.resize(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) t.ne[d] = c.read<int64_t>(stage + " (dimensions)");
    const uint32_t type_id = c.read<uint32_t>(stage + " (type)");
    t.offset = c.read<uint64_t>(stage + " (data offset)");
    const TypeTraits& tt = type_traits(type_id);
    if (!tt.known) fail("{}: {}: unknown tensor type id {}", p, stage, type_id);
    t.type = static_cast<DType>(type_id);
    int64_t nel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      if (t.ne[d] < 0) fail("{}: {}: negative dimension ne[{}] = {}", p, stage, d, t.ne[d]);
      if (t.ne[d] != 0 && nel > std::numeric_limits<int64_t>::max() / t.ne[d])
        fail("{}: {}: dimensions {} overflow the element count", p, stage,
             fmt::join(t.ne, " x "));
      nel *= t.ne[d];
    }
    if (t.ne[0] % tt.block_size != 0)
      fail("{}: {}: row length {} is not a multiple of the {} block size {}", p, stage, t.ne[0],
           tt.name, tt.block_size);
    t.nelements = nel;
    // bytes = rows * row bytes; both factors are bounded by nel, check the product.
    const uint64_t row_bytes = static_cast<uint64_t>(t.ne[0] / tt.block_size) * tt.type_size;
    const uint64_t rows = t.ne[0] == 0 ? 0 : static_cast<uint64_t>(nel / t.ne[0]);
    if (rows != 0 && row_bytes > std::numeric_limits<uint64_t>::max() / rows)
      fail("{}: {}: byte size overflows", p, stage);
    t.nbytes = row_bytes * rows;
    if (tensor_index_.count(t.name)) fail("{}: duplicate tensor name '{}'", p, t.name);
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  const uint64_t header_end = c.pos();
  data_offset_ = (header_end + alignment_ - 1) / alignment_ * alignment_;
  const uint64_t size = file_->size();
  if (n_tensors > 0 && data_offset_ > size)
    fail("{}: data section would start at offset {} past the end of the file (size {})", p,
         data_offset_, size);
  const uint64_t data_size = size >= data_offset_ ? size - data_offset_ : 0;

  for (TensorInfo& t : tensors_) {
    if (t.offset % alignment_ != 0)
      fail("{}: reading tensor {}: data offset {} is not a multiple of the alignment {}", p,
           t.name, t.offset, alignment_);
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      fail("{}: reading tensor {}: data at offset {} + {} bytes runs past the end of the file "
           "(data section holds {} bytes; file size {}; truncated file?)",
           p, t.name, data_offset_ + t.offset, t.nbytes, data_size, size);
    t.data = file_->data() + data_offset_ + t.offset;
    t.file = file_.get();
    t.file_offset = data_offset_ + t.offset;
  }
  // Overlap check on tensors sorted by offset.
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo* a = by_offset[i - 1];
    const TensorInfo* b = by_offset[i];
    if (a->nbytes > 0 && b->nbytes > 0 && a->offset + a->nbytes > b->offset)
      fail("{}: tensors {} (offset {}, {} bytes) and {} (offset {}) overlap", p, a->name,
           a->offset, a->nbytes, b->name, b->offset);
  }
}

const GGUFValue* GGUFFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GGUFValue& GGUFFile::get(const std::string& key) const {
  const GGUFValue* v = find(key);
  if (!v) fail("{}: missing metadata key {}", path(), key);
  return *v;
}

namespace {
template <class F>
auto with_key(const GGUFFile& f, const std::string& key, F fn) -> decltype(fn(f.get(key))) {
  const GGUFValue& v = f.get(key);
  try {
    return fn(v);
  } catch (const Error& e) {
    fail("{}: metadata key {}: {}", f.path(), key, e.what());
  }
}
}  // namespace

std::string GGUFFile::get_string(const std::string& key) const {
  return with_key(*this, key, [](const GGUFValue& v) { return v.as_string(); });
}
int64_t GGUFFile::get_int(const std::string& key) const {
  return with_key(*this, key, [](const GGUFValue& v) { return v.as_int(); });
}
double GGUFFile::get_float(const std::string& key) const {
  return with_key(*this, key, [](const GGUFValue& v) { return v.as_float(); });
}
bool GGUFFile::get_bool(const std::string& key) const {
  return with_key(*this, key, [](const GGUFValue& v) { return v.as_bool(); });
}
std::optional<std::string> GGUFFile::opt_string(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_string(key);
}
std::optional<int64_t> GGUFFile::opt_int(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_int(key);
}
std::optional<double> GGUFFile::opt_float(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_float(key);
}
std::optional<bool> GGUFFile::opt_bool(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_bool(key);
}

const TensorInfo* GGUFFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace slm
