#include "convert/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "convert/json_file.h"
#include "core/error.h"
#include "core/fp16.h"

namespace slm::convert {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The safetensors reference implementation refuses headers above 100 MB; a larger length is a
// damaged file, and reading it as JSON would only waste time before failing.
constexpr uint64_t kMaxHeader = uint64_t{100} << 20;

size_t dtype_size(const std::string& d) {
  static const std::map<std::string, size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"U64", 8}, {"I32", 4},
      {"U32", 4}, {"I16", 2}, {"U16", 2}, {"I8", 1},   {"U8", 1},  {"BOOL", 1},
      {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1}};
  auto it = sizes.find(d);
  return it == sizes.end() ? 0 : it->second;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

void st_read_floats(const StTensor& t, int64_t first, int64_t n, float* dst) {
  if (first < 0 || n < 0 || first + n > t.nelements())
    fail("{}: tensor {}: elements [{}, {}) are outside its {}", t.file ? t.file->path() : "?", t.name,
         first, first + n, t.nelements());
  if (t.dtype == "F32") {
    std::memcpy(dst, t.data + first * 4, static_cast<size_t>(n) * 4);
  } else if (t.dtype == "F16" || t.dtype == "BF16") {
    const uint8_t* p = t.data + first * 2;
    const bool bf = t.dtype == "BF16";
    for (int64_t i = 0; i < n; ++i) {
      // memcpy: the data of a tensor need not be 2-byte aligned inside the file.
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      dst[i] = bf ? bf16_to_fp32(h) : fp16_to_fp32(h);
    }
  } else {
    fail("{}: tensor {} has dtype {}; only F32, F16 and BF16 weights can be converted",
         t.file ? t.file->path() : "?", t.name, t.dtype);
  }
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> sf(new SafetensorsFile());
  sf->file_ = std::make_unique<MappedFile>(path);
  const MappedFile& f = *sf->file_;
  const uint64_t size = f.size();
  if (size < 8) fail("{}: {} bytes is too short for a safetensors file (no header length)", path, size);
  const uint64_t n = read_u64_le(f.data());
  if (n > size - 8)
    fail("{}: header length {} runs past the end of the file ({} bytes): truncated or not a "
         "safetensors file", path, n, size);
  if (n > kMaxHeader) fail("{}: header length {} is over the 100 MB limit", path, n);
  const char* hp = reinterpret_cast<const char*>(f.data() + 8);
  json h;
  try {
    h = json::parse(hp, hp + n);
  } catch (const json::exception& e) {
    fail("{}: header is not valid JSON: {}", path, e.what());
  }
  if (!h.is_object()) fail("{}: header is not a JSON object", path);
  const uint64_t data_start = 8 + n, data_size = size - data_start;

  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail("{}: __metadata__ is not an object", path);
      for (auto m = v.begin(); m != v.end(); ++m)
        if (m.value().is_string()) sf->metadata_[m.key()] = m.value().get<std::string>();
      continue;
    }
    if (!v.is_object()) fail("{}: tensor {}: entry is not an object", path, name);
    StTensor t;
    t.name = name;
    t.file = sf->file_.get();
    const auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) fail("{}: tensor {}: no dtype", path, name);
    t.dtype = dt->get<std::string>();
    t.elem_size = dtype_size(t.dtype);
    if (t.elem_size == 0) fail("{}: tensor {}: unknown dtype '{}'", path, name, t.dtype);
    const auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) fail("{}: tensor {}: no shape", path, name);
    // Element count with overflow checks: a damaged shape must not wrap around to a size that
    // happens to match the offsets.
    uint64_t count = 1;
    for (const json& d : *sh) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
        fail("{}: tensor {}: shape {} is not a list of non-negative integers", path, name, sh->dump());
      const uint64_t x = d.get<uint64_t>();
      if (x != 0 && count > std::numeric_limits<uint64_t>::max() / x / t.elem_size)
        fail("{}: tensor {}: shape {} is too large", path, name, sh->dump());
      count *= x;
      t.shape.push_back(static_cast<int64_t>(x));
    }
    const auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      fail("{}: tensor {}: data_offsets must be two non-negative integers", path, name);
    const uint64_t b = (*off)[0].get<uint64_t>(), e = (*off)[1].get<uint64_t>();
    if (b > e) fail("{}: tensor {}: data_offsets [{}, {}] end before they begin", path, name, b, e);
    if (e > data_size)
      fail("{}: tensor {}: data_offsets [{}, {}] run past the end of the data area ({} bytes): "
           "the file is truncated or its header is damaged", path, name, b, e, data_size);
    if (e - b != count * t.elem_size)
      fail("{}: tensor {}: shape {} of {} needs {} bytes, but data_offsets [{}, {}] hold {}", path,
           name, sh->dump(), t.dtype, count * t.elem_size, b, e, e - b);
    t.nbytes = e - b;
    t.file_offset = data_start + b;
    t.data = f.data() + t.file_offset;
    sf->tensors_.push_back(std::move(t));
  }
  std::sort(sf->tensors_.begin(), sf->tensors_.end(), [](const StTensor& a, const StTensor& b) {
    return a.file_offset != b.file_offset ? a.file_offset < b.file_offset : a.name < b.name;
  });
  // Overlap: sorted by start, each tensor must end before the next one starts. (Empty tensors
  // take no bytes and overlap nothing.)
  const StTensor* prev = nullptr;
  for (const StTensor& t : sf->tensors_) {
    if (t.nbytes == 0) continue;
    if (prev && prev->file_offset + prev->nbytes > t.file_offset)
      fail("{}: tensors {} and {} overlap (bytes [{}, {}) and [{}, {}) of the data area)", path,
           prev->name, t.name, prev->file_offset - data_start, prev->file_offset + prev->nbytes - data_start,
           t.file_offset - data_start, t.file_offset + t.nbytes - data_start);
    prev = &t;
  }
  return sf;
}

Checkpoint Checkpoint::open_dir(const std::string& dir) {
  Checkpoint cp;
  const fs::path d(dir);
  const fs::path index = d / "model.safetensors.index.json";
  // Which file each tensor lives in, when an index says so.
  std::map<std::string, std::string> weight_map;
  std::vector<std::string> names;
  if (fs::is_regular_file(index)) {
    const json j = read_json_file(index.string());
    const auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object()) fail("{}: no weight_map object", index.string());
    std::set<std::string> files;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string()) fail("{}: weight_map entry {} is not a file name", index.string(), it.key());
      const std::string file = it.value().get<std::string>();
      if (file.find('/') != std::string::npos || file == "..")
        fail("{}: weight_map entry {} names a file outside the folder: {}", index.string(), it.key(), file);
      weight_map[it.key()] = file;
      files.insert(file);
    }
    if (files.empty()) fail("{}: weight_map is empty", index.string());
    for (const std::string& f : files) {
      if (!fs::is_regular_file(d / f)) {
        // Name a tensor too: that is what the user will look for in the index.
        std::string example;
        for (const auto& [t, file] : weight_map)
          if (file == f) { example = t; break; }
        fail("{}: shard {} (holding {} among others) is missing from the folder", index.string(), f, example);
      }
      names.push_back(f);
    }
  } else {
    for (const auto& e : fs::directory_iterator(d)) {
      const std::string n = e.path().filename().string();
      if (e.is_regular_file() && n.rfind("model", 0) == 0 && n.size() > 12 &&
          n.compare(n.size() - 12, 12, ".safetensors") == 0)
        names.push_back(n);
    }
    std::sort(names.begin(), names.end());
    if (names.empty()) fail("{}: no model.safetensors (or model.safetensors.index.json) in the folder", dir);
  }
  for (const std::string& n : names) {
    cp.files_.push_back(SafetensorsFile::open((d / n).string()));
    cp.file_names_.push_back(n);
    for (const StTensor& t : cp.files_.back()->tensors()) {
      if (!weight_map.empty()) {
        auto it = weight_map.find(t.name);
        if (it == weight_map.end())
          fail("{}: tensor {} is in {} but not in model.safetensors.index.json", dir, t.name, n);
        if (it->second != n)
          fail("{}: tensor {} is in {}, but model.safetensors.index.json puts it in {}", dir, t.name, n, it->second);
      }
      if (!cp.by_name_.emplace(t.name, &t).second)
        fail("{}: tensor {} appears in more than one file (again in {})", dir, t.name, n);
      cp.order_.push_back(&t);
    }
  }
  for (const auto& [t, file] : weight_map)
    if (!cp.by_name_.count(t))
      fail("{}: model.safetensors.index.json puts tensor {} in {}, which does not hold it", dir, t, file);
  return cp;
}

const StTensor* Checkpoint::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t n = 0;
  for (const StTensor* t : order_) n += t->nbytes;
  return n;
}

}  // namespace slm::convert
