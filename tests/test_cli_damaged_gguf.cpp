// Damaged GGUF files through the CLI: a tiny valid llama model is built in memory, checked to
// work with `slm info` and `slm run`, then damaged in many ways (truncated at many points,
// flipped header fields, offsets past the end, absurd dimensions, bad metadata, missing or
// misshapen tensors). Every damaged file must make both commands exit with status 1 and print
// exactly one line, "slm: error: ...", on stderr: no crash, no hang, no sanitizer report.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/gguf.h"
#include "support/run_cli.h"
#include "support/tiny_model.h"

extern char** environ;

namespace {

// Removes an array's last element, whatever its element type.
void drop_last(slm::GGUFValue& v) {
  if (v.elem_type == slm::GGUFType::STRING) {
    std::vector<std::string> all = v.as_strings();
    all.pop_back();
    v = slm::GGUFValue::strings(all);
  } else {
    v.raw.resize(v.raw.size() - slm::gguf_type_size(v.elem_type));
  }
}

namespace fs = std::filesystem;
using slm::DType;
using slm::GGUFType;
using slm::GGUFValue;
using slm::test::TinyModel;
using Bytes = std::vector<uint8_t>;

// ---- running the CLI -------------------------------------------------------------------------

using slm::test::RunResult;

RunResult run_cli(const std::vector<std::string>& args, double timeout_s = 20.0) {
  return slm::test::run_cli(args, timeout_s);
}

std::vector<std::string> info_args(const std::string& path) { return {"info", "-m", path}; }
std::vector<std::string> run_args(const std::string& path) {
  return {"run", "-m", path, "-p", "hi", "-n", "4", "--temp", "0"};
}

void write_file(const fs::path& p, const Bytes& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!f) throw std::runtime_error("cannot write " + p.string());
}

// A scratch directory removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("slm_damaged_gguf_" + std::to_string(getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// ---- where the fields of a (valid) GGUF file are -------------------------------------------

struct KvLoc {
  std::string key;
  size_t start = 0;       // the key's length field
  size_t type_off = 0;
  size_t value_off = 0;   // scalar value, string length, or (arrays) the element type
  size_t arr_len_off = 0; // arrays only
  size_t end = 0;
  uint32_t type = 0;
};

struct TensorLoc {
  std::string name;
  size_t start = 0;  // the name's length field
  size_t ndims_off = 0, dims_off = 0, type_off = 0, offset_off = 0, end = 0;
  std::vector<int64_t> ne;
  uint32_t type = 0;
  uint64_t offset = 0;
  uint64_t nbytes = 0;
};

struct Layout {
  std::vector<KvLoc> kv;
  std::vector<TensorLoc> tensors;
  size_t header_end = 0;   // end of the tensor infos
  size_t data_offset = 0;  // start of the data section
  uint64_t data_end = 0;   // end of the last tensor's data (relative to data_offset)

  const KvLoc& key(const std::string& k) const {
    for (const KvLoc& l : kv)
      if (l.key == k) return l;
    throw std::logic_error("layout: no key " + k);
  }
  const TensorLoc& tensor(const std::string& n) const {
    for (const TensorLoc& t : tensors)
      if (t.name == n) return t;
    throw std::logic_error("layout: no tensor " + n);
  }
};

template <class T>
T get(const Bytes& b, size_t off) {
  if (off + sizeof(T) > b.size()) throw std::logic_error("layout: read past the end");
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}

size_t value_size(const Bytes& b, uint32_t type, size_t off) {
  switch (static_cast<GGUFType>(type)) {
    case GGUFType::UINT8: case GGUFType::INT8: case GGUFType::BOOL: return 1;
    case GGUFType::UINT16: case GGUFType::INT16: return 2;
    case GGUFType::UINT32: case GGUFType::INT32: case GGUFType::FLOAT32: return 4;
    case GGUFType::UINT64: case GGUFType::INT64: case GGUFType::FLOAT64: return 8;
    case GGUFType::STRING: return 8 + get<uint64_t>(b, off);
    case GGUFType::ARRAY: break;
  }
  throw std::logic_error("layout: unexpected type");
}

// Parses a file written by GGUFWriter (trusted: it only locates fields).
Layout parse_layout(const Bytes& b) {
  Layout L;
  size_t pos = 8;
  const uint64_t n_tensors = get<uint64_t>(b, pos);
  const uint64_t n_kv = get<uint64_t>(b, pos + 8);
  pos += 16;
  uint64_t alignment = 32;
  for (uint64_t i = 0; i < n_kv; ++i) {
    KvLoc k;
    k.start = pos;
    const uint64_t len = get<uint64_t>(b, pos);
    k.key.assign(reinterpret_cast<const char*>(b.data() + pos + 8), len);
    pos += 8 + len;
    k.type_off = pos;
    k.type = get<uint32_t>(b, pos);
    pos += 4;
    k.value_off = pos;
    if (k.type == static_cast<uint32_t>(GGUFType::ARRAY)) {
      const uint32_t et = get<uint32_t>(b, pos);
      k.arr_len_off = pos + 4;
      const uint64_t n = get<uint64_t>(b, pos + 4);
      pos += 12;
      for (uint64_t j = 0; j < n; ++j) pos += value_size(b, et, pos);
    } else {
      if (k.key == "general.alignment") alignment = get<uint32_t>(b, pos);
      pos += value_size(b, k.type, pos);
    }
    k.end = pos;
    L.kv.push_back(k);
  }
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorLoc t;
    t.start = pos;
    const uint64_t len = get<uint64_t>(b, pos);
    t.name.assign(reinterpret_cast<const char*>(b.data() + pos + 8), len);
    pos += 8 + len;
    t.ndims_off = pos;
    const uint32_t nd = get<uint32_t>(b, pos);
    pos += 4;
    t.dims_off = pos;
    for (uint32_t d = 0; d < nd; ++d, pos += 8) t.ne.push_back(get<int64_t>(b, pos));
    t.type_off = pos;
    t.type = get<uint32_t>(b, pos);
    pos += 4;
    t.offset_off = pos;
    t.offset = get<uint64_t>(b, pos);
    pos += 8;
    t.end = pos;
    int64_t n = 1;
    for (int64_t d : t.ne) n *= d;
    t.nbytes = slm::row_size(static_cast<DType>(t.type), t.ne[0]) * static_cast<uint64_t>(n / t.ne[0]);
    L.data_end = std::max(L.data_end, t.offset + t.nbytes);
    L.tensors.push_back(t);
  }
  L.header_end = pos;
  L.data_offset = (pos + alignment - 1) / alignment * alignment;
  return L;
}

// ---- the corpus --------------------------------------------------------------------------------

struct Variant {
  std::string name;
  Bytes bytes;
};

template <class T>
Bytes patched(Bytes b, size_t off, T v) {
  if (off + sizeof(T) > b.size()) throw std::logic_error("patch past the end");
  std::memcpy(b.data() + off, &v, sizeof(T));
  return b;
}

Bytes truncated(const Bytes& b, size_t n) {
  if (n >= b.size()) throw std::logic_error("truncation point past the end");
  return Bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n));
}

// The valid model. general.name is moved to the end of the metadata, where a truncation inside
// a string is not already caught by the header counts; it is padded so that the tensor infos
// end two or more bytes before the data section: then "inside the alignment padding" exists.
TinyModel base_model() {
  TinyModel m = slm::test::make_tiny_llama();
  std::string name = "tiny-llama";
  for (int i = 0; i < 64; ++i, name += '-') {
    m.remove("general.name");
    m.set("general.name", GGUFValue::str(name));
    const Layout L = parse_layout(m.to_bytes());
    if (L.data_offset - L.header_end >= 2) return m;
  }
  throw std::logic_error("cannot place padding before the data section");
}

std::vector<Variant> make_corpus(const TinyModel& base) {
  const Bytes v = base.to_bytes();
  const Layout L = parse_layout(v);
  std::vector<Variant> out;
  auto add = [&](std::string name, Bytes b) { out.push_back({std::move(name), std::move(b)}); };
  auto add_model = [&](std::string name, const std::function<void(TinyModel&)>& change) {
    TinyModel m = base;
    change(m);
    add(std::move(name), m.to_bytes());
  };

  const KvLoc& arch = L.key("general.architecture");
  const KvLoc& toks = L.key("tokenizer.ggml.tokens");
  const KvLoc& scores = L.key("tokenizer.ggml.scores");
  const KvLoc& name = L.key("general.name");
  const KvLoc& add_eos = L.key("tokenizer.ggml.add_eos_token");
  const TensorLoc& embd = L.tensor("token_embd.weight");
  const TensorLoc& first = L.tensors.front();
  const TensorLoc& last = L.tensors.back();
  const TensorLoc& q = L.tensor("blk.0.attn_q.weight");
  const TensorLoc& down = L.tensor("blk.1.ffn_down.weight");  // Q8_0
  const size_t data_end = L.data_offset + L.data_end;          // file offset

  // Truncations, from the magic to the last byte of tensor data. Early in the metadata the
  // header's counts already cannot fit in what is left; later ones reach each field's check.
  add("truncated: empty file", truncated(v, 0));
  add("truncated: inside the magic", truncated(v, 2));
  add("truncated: inside the version", truncated(v, 6));
  add("truncated: inside the tensor count", truncated(v, 12));
  add("truncated: inside the metadata count", truncated(v, 20));
  add("truncated: right after the header", truncated(v, 24));
  add("truncated: inside the first key's length", truncated(v, L.kv.front().start + 3));
  add("truncated: inside a key", truncated(v, arch.start + 8 + 5));
  add("truncated: inside a value type", truncated(v, arch.type_off + 2));
  add("truncated: inside a string length", truncated(v, arch.value_off + 4));
  add("truncated: inside a string value", truncated(v, arch.value_off + 8 + 2));
  add("truncated: inside an array header", truncated(v, toks.arr_len_off + 3));
  add("truncated: inside a string array", truncated(v, (toks.value_off + toks.end) / 2));
  add("truncated: inside a float array", truncated(v, (scores.value_off + scores.end) / 2 + 1));
  add("truncated: inside the last string of an array", truncated(v, toks.end - 1));
  add("truncated: inside a string length in an array", truncated(v, toks.end - 5));
  add("truncated: inside the last float of an array", truncated(v, scores.end - 2));
  add("truncated: inside a bool value", truncated(v, add_eos.end - 1));
  add("truncated: inside a late key's length", truncated(v, name.start + 3));
  add("truncated: inside a late key", truncated(v, name.start + 8 + 4));
  add("truncated: inside a late value type", truncated(v, name.type_off + 2));
  add("truncated: inside a late string length", truncated(v, name.value_off + 4));
  add("truncated: inside a late string value", truncated(v, name.value_off + 8 + 3));
  add("truncated: inside a tensor name", truncated(v, first.start + 8 + 4));
  add("truncated: inside a tensor dimension count", truncated(v, q.ndims_off + 1));
  add("truncated: inside tensor dimensions", truncated(v, q.dims_off + 11));
  add("truncated: inside a tensor type", truncated(v, q.type_off + 3));
  add("truncated: inside the last tensor offset", truncated(v, last.offset_off + 4));
  add("truncated: at the end of the tensor infos", truncated(v, L.header_end));
  add("truncated: inside the alignment padding", truncated(v, L.header_end + 1));
  add("truncated: at the start of the data", truncated(v, L.data_offset));
  add("truncated: inside the first tensor's data", truncated(v, L.data_offset + 7));
  add("truncated: halfway through the data", truncated(v, (L.data_offset + data_end) / 2));
  add("truncated: last byte of tensor data missing", truncated(v, data_end - 1));
  for (int k = 1; k <= 8; ++k)
    add("truncated: at " + std::to_string(k) + "/9 of the file",
        truncated(v, static_cast<size_t>(data_end * k / 9)));

  // Header fields.
  add("bad magic 'GGUX'", patched<uint8_t>(v, 3, 'X'));
  add("bad magic 'gguf'", patched<uint32_t>(v, 0, 0x66756767));
  add("bad magic (zeros)", patched<uint32_t>(v, 0, 0));
  add("version 0", patched<uint32_t>(v, 4, 0));
  add("version 1", patched<uint32_t>(v, 4, 1));
  add("version 4", patched<uint32_t>(v, 4, 4));
  add("version 0xFFFFFFFF", patched<uint32_t>(v, 4, 0xFFFFFFFFu));
  const uint64_t n_tensors = L.tensors.size(), n_kv = L.kv.size();
  add("tensor count 2^63", patched<uint64_t>(v, 8, uint64_t{1} << 63));
  add("tensor count UINT64_MAX", patched<uint64_t>(v, 8, ~uint64_t{0}));
  add("tensor count + 1", patched<uint64_t>(v, 8, n_tensors + 1));
  add("tensor count - 1", patched<uint64_t>(v, 8, n_tensors - 1));
  add("tensor count 0", patched<uint64_t>(v, 8, 0));
  add("metadata count 2^40", patched<uint64_t>(v, 16, uint64_t{1} << 40));
  add("metadata count UINT64_MAX", patched<uint64_t>(v, 16, ~uint64_t{0}));
  add("metadata count + 1", patched<uint64_t>(v, 16, n_kv + 1));
  add("metadata count - 1", patched<uint64_t>(v, 16, n_kv - 1));
  add("metadata count 0", patched<uint64_t>(v, 16, 0));

  // Metadata encoding.
  add("key length 2^62", patched<uint64_t>(v, L.kv.front().start, uint64_t{1} << 62));
  add("key length UINT64_MAX", patched<uint64_t>(v, arch.start, ~uint64_t{0}));
  add("string value length UINT64_MAX", patched<uint64_t>(v, arch.value_off, ~uint64_t{0}));
  add("string value length = file size", patched<uint64_t>(v, arch.value_off, v.size()));
  add("array length 2^61", patched<uint64_t>(v, toks.arr_len_off, uint64_t{1} << 61));
  add("array length UINT64_MAX", patched<uint64_t>(v, toks.arr_len_off, ~uint64_t{0}));
  add("float array length 2^62", patched<uint64_t>(v, scores.arr_len_off, uint64_t{1} << 62));
  add("array string element length huge",
      patched<uint64_t>(v, toks.arr_len_off + 8, uint64_t{1} << 40));
  add("unknown value type 13", patched<uint32_t>(v, arch.type_off, 13));
  add("unknown value type 0xFFFFFFFF", patched<uint32_t>(v, arch.type_off, 0xFFFFFFFFu));
  add("unknown array element type 99", patched<uint32_t>(v, toks.value_off, 99));
  add("nested array element type", patched<uint32_t>(v, toks.value_off, 9));
  add("string value retyped as uint32", patched<uint32_t>(v, arch.type_off, 4));
  add("string array retyped as uint64 array", patched<uint32_t>(v, toks.value_off, 10));
  {
    // general.architecturX -> general.architecture: a duplicate key made in place.
    TinyModel m = base;
    m.set("general.architecturX", GGUFValue::str("llama"));
    Bytes b = m.to_bytes();
    const size_t key_start = parse_layout(b).key("general.architecturX").start;
    b[key_start + 8 + 19] = 'e';
    add("duplicate metadata key", b);
  }

  // Tensor infos.
  add("tensor type 4 (removed Q4_2)", patched<uint32_t>(v, q.type_off, 4));
  add("tensor type 99", patched<uint32_t>(v, q.type_off, 99));
  add("tensor type 1000", patched<uint32_t>(v, q.type_off, 1000));
  add("tensor type 0xFFFFFFFF", patched<uint32_t>(v, q.type_off, 0xFFFFFFFFu));
  add("tensor with 0 dimensions", patched<uint32_t>(v, q.ndims_off, 0));
  add("tensor with 5 dimensions", patched<uint32_t>(v, q.ndims_off, 5));
  add("tensor with 2^32-1 dimensions", patched<uint32_t>(v, q.ndims_off, 0xFFFFFFFFu));
  add("negative dimension", patched<int64_t>(v, q.dims_off + 8, -1));
  add("dimension INT64_MIN", patched<int64_t>(v, q.dims_off, std::numeric_limits<int64_t>::min()));
  add("dimensions overflow int64 (2^32 x 2^32)",
      patched<int64_t>(patched<int64_t>(v, embd.dims_off, int64_t{1} << 32), embd.dims_off + 8,
                       int64_t{1} << 32));
  add("dimensions overflow the byte count (2^61 x 2 f32)",
      patched<int64_t>(patched<int64_t>(v, embd.dims_off, int64_t{1} << 61), embd.dims_off + 8, 2));
  add("absurd dimension 2^40 rows", patched<int64_t>(v, embd.dims_off + 8, int64_t{1} << 40));
  add("zero dimension", patched<int64_t>(v, q.dims_off + 8, 0));
  add("Q8_0 row length 48 (not a multiple of 32)", patched<int64_t>(v, down.dims_off, 48));
  add("Q8_0 row length 16", patched<int64_t>(v, down.dims_off, 16));
  add("tensor name length 2^62", patched<uint64_t>(v, q.start, uint64_t{1} << 62));
  add("tensor offset past the end", patched<uint64_t>(v, last.offset_off, (v.size() + 4096) / 32 * 32));
  add("tensor offset near UINT64_MAX",
      patched<uint64_t>(v, last.offset_off, std::numeric_limits<uint64_t>::max() / 32 * 32));
  add("tensor data ends past the file", patched<uint64_t>(v, last.offset_off,
                                                          (v.size() - L.data_offset) / 32 * 32));
  add("misaligned tensor offset (+1)", patched<uint64_t>(v, last.offset_off, last.offset + 1));
  add("misaligned tensor offset (+16)", patched<uint64_t>(v, q.offset_off, q.offset + 16));
  add("two tensors overlap", patched<uint64_t>(v, q.offset_off, L.tensors[1].offset));
  {
    Bytes b = v;
    const TensorLoc& q1 = L.tensor("blk.1.attn_q.weight");
    b[q1.start + 8 + 4] = '0';  // blk.1.attn_q.weight -> blk.0.attn_q.weight
    add("duplicate tensor name", b);
  }

  // Alignment.
  add_model("general.alignment 0", [](TinyModel& m) { m.set("general.alignment", GGUFValue::u32(0)); });
  add_model("general.alignment 3", [](TinyModel& m) { m.set("general.alignment", GGUFValue::u32(3)); });
  add_model("general.alignment 2^30",
            [](TinyModel& m) { m.set("general.alignment", GGUFValue::u32(1u << 30)); });
  add_model("general.alignment UINT64_MAX",
            [](TinyModel& m) { m.set("general.alignment", GGUFValue::u64(~uint64_t{0})); });
  add_model("general.alignment -32",
            [](TinyModel& m) { m.set("general.alignment", GGUFValue::i32(-32)); });
  add_model("general.alignment as a string",
            [](TinyModel& m) { m.set("general.alignment", GGUFValue::str("32")); });
  add_model("general.alignment as a float",
            [](TinyModel& m) { m.set("general.alignment", GGUFValue::f32(32.0f)); });
  add_model("general.alignment as a bool",
            [](TinyModel& m) { m.set("general.alignment", GGUFValue::boolean(true)); });
  add_model("general.alignment as an array",
            [](TinyModel& m) { m.set("general.alignment", GGUFValue::i32s({32})); });

  // Architecture and hyperparameters.
  add_model("general.architecture missing", [](TinyModel& m) { m.remove("general.architecture"); });
  add_model("general.architecture 'gpt-j-unknown'",
            [](TinyModel& m) { m.set("general.architecture", GGUFValue::str("gpt-j-unknown")); });
  add_model("general.architecture empty",
            [](TinyModel& m) { m.set("general.architecture", GGUFValue::str("")); });
  add_model("general.architecture as uint32",
            [](TinyModel& m) { m.set("general.architecture", GGUFValue::u32(7)); });
  add_model("general.architecture as a string array",
            [](TinyModel& m) { m.set("general.architecture", GGUFValue::strings({"llama"})); });
  add_model("block_count missing", [](TinyModel& m) { m.remove("llama.block_count"); });
  add_model("embedding_length missing", [](TinyModel& m) { m.remove("llama.embedding_length"); });
  add_model("context_length missing", [](TinyModel& m) { m.remove("llama.context_length"); });
  add_model("head_count 0", [](TinyModel& m) { m.set("llama.attention.head_count", GGUFValue::u32(0)); });
  add_model("head_count_kv 0",
            [](TinyModel& m) { m.set("llama.attention.head_count_kv", GGUFValue::u32(0)); });
  add_model("head_count_kv 3 (does not divide head_count 4)",
            [](TinyModel& m) { m.set("llama.attention.head_count_kv", GGUFValue::u32(3)); });
  add_model("head_count 64 (more heads than embedding values)",
            [](TinyModel& m) { m.set("llama.attention.head_count", GGUFValue::u32(64)); });
  add_model("embedding_length -32",
            [](TinyModel& m) { m.set("llama.embedding_length", GGUFValue::i32(-32)); });
  add_model("block_count 2^40",
            [](TinyModel& m) { m.set("llama.block_count", GGUFValue::u64(uint64_t{1} << 40)); });
  add_model("block_count UINT64_MAX",
            [](TinyModel& m) { m.set("llama.block_count", GGUFValue::u64(~uint64_t{0})); });
  add_model("block_count 3 (one layer more than the tensors)",
            [](TinyModel& m) { m.set("llama.block_count", GGUFValue::u32(3)); });
  add_model("context_length 0", [](TinyModel& m) { m.set("llama.context_length", GGUFValue::u32(0)); });
  add_model("feed_forward_length as a string",
            [](TinyModel& m) { m.set("llama.feed_forward_length", GGUFValue::str("64")); });
  add_model("layer_norm_rms_epsilon as a string", [](TinyModel& m) {
    m.set("llama.attention.layer_norm_rms_epsilon", GGUFValue::str("1e-5"));
  });
  add_model("rope.dimension_count 7 (odd)",
            [](TinyModel& m) { m.set("llama.rope.dimension_count", GGUFValue::u32(7)); });
  add_model("attention.key_length 0",
            [](TinyModel& m) { m.set("llama.attention.key_length", GGUFValue::u32(0)); });
  add_model("rope.scaling.type 'bogus'",
            [](TinyModel& m) { m.set("llama.rope.scaling.type", GGUFValue::str("bogus")); });
  add_model("vocab_size 100000 (token_embd has fewer rows)",
            [](TinyModel& m) { m.set("llama.vocab_size", GGUFValue::u32(100000)); });
  add_model("one token fewer than token_embd rows", [](TinyModel& m) {
    for (const char* k : {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"})
      drop_last(*m.find(k));
  });

  // Tensors.
  add_model("token_embd.weight missing", [](TinyModel& m) { m.remove_tensor("token_embd.weight"); });
  add_model("output_norm.weight missing", [](TinyModel& m) { m.remove_tensor("output_norm.weight"); });
  add_model("blk.1.ffn_down.weight missing",
            [](TinyModel& m) { m.remove_tensor("blk.1.ffn_down.weight"); });
  add_model("attn_q wrong shape (32 x 16)", [](TinyModel& m) {
    slm::test::TinyTensor* t = m.tensor("blk.0.attn_q.weight");
    t->ne = {32, 16};
    t->data.resize(32 * 16 * 4);
  });
  add_model("attn_k transposed (16 x 32 instead of 32 x 16)", [](TinyModel& m) {
    slm::test::TinyTensor* t = m.tensor("blk.1.attn_k.weight");
    t->ne = {16, 32};
  });
  add_model("token_embd 3-D (32 x V x 2)", [](TinyModel& m) {
    slm::test::TinyTensor* t = m.tensor("token_embd.weight");
    t->ne.push_back(2);
    const Bytes copy = t->data;
    t->data.insert(t->data.end(), copy.begin(), copy.end());
  });
  add_model("output_norm with 16 values", [](TinyModel& m) {
    slm::test::TinyTensor* t = m.tensor("output_norm.weight");
    t->ne = {16};
    t->data.resize(16 * 4);
  });
  add_model("attn_k as I8 (no kernels)", [](TinyModel& m) {
    slm::test::TinyTensor* t = m.tensor("blk.0.attn_k.weight");
    t->type = DType::I8;
    t->data.resize(static_cast<size_t>(t->ne[0] * t->ne[1]));
  });
  return out;
}

// ---- checks ----------------------------------------------------------------------------------

// Returns "" when r is a clean one-line error that names the file, else what is wrong with it.
std::string error_problem(const RunResult& r, const std::string& file) {
  if (r.timed_out) return "timed out";
  if (r.signal) return "killed by signal " + std::to_string(r.signal) + " (" + strsignal(r.signal) + ")";
  if (r.exit_code == 0) return "exited 0 (the damage went unnoticed)";
  if (r.exit_code != 1) return "exit status " + std::to_string(r.exit_code) + " (expected 1)";
  for (const char* bad : {"AddressSanitizer", "LeakSanitizer", "runtime error", "terminate called",
                          "UndefinedBehaviorSanitizer"})
    if (r.err.find(bad) != std::string::npos) return std::string("stderr mentions '") + bad + "'";
  const std::string prefix = "slm: error: ";
  if (r.err.rfind(prefix, 0) != 0) return "stderr does not start with 'slm: error: '";
  if (r.err.empty() || r.err.back() != '\n' || r.err.find('\n') != r.err.size() - 1)
    return "stderr is not exactly one line";
  if (r.err.size() < prefix.size() + 12) return "the message is too short to say anything";
  if (r.err.find(file) == std::string::npos) return "the message does not name the file";
  return "";
}

std::string message_of(const RunResult& r) {
  std::string m = r.err;
  while (!m.empty() && m.back() == '\n') m.pop_back();
  if (m.rfind("slm: error: ", 0) == 0) m.erase(0, 12);
  return m;
}

std::string shorten(std::string s, size_t n = 400) {
  for (char& c : s)
    if (c == '\n') c = '|';
  if (s.size() > n) s = s.substr(0, n) + "...";
  return s;
}

TEST(CliDamagedGguf, ValidTinyModelWorks) {
  TempDir dir;
  const fs::path p = dir.path / "valid.gguf";
  write_file(p, base_model().to_bytes());
  const RunResult info = run_cli(info_args(p.string()));
  EXPECT_FALSE(info.timed_out);
  EXPECT_EQ(info.signal, 0);
  EXPECT_EQ(info.exit_code, 0) << "stderr: " << info.err;
  EXPECT_EQ(info.err, "");
  EXPECT_NE(info.out.find("architecture:  llama"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("n_layer:       2"), std::string::npos) << info.out;

  const RunResult run = run_cli(run_args(p.string()));
  EXPECT_FALSE(run.timed_out);
  EXPECT_EQ(run.signal, 0);
  EXPECT_EQ(run.exit_code, 0) << "stderr: " << run.err;
  for (const char* bad : {"AddressSanitizer", "LeakSanitizer", "runtime error", "slm: error"})
    EXPECT_EQ(run.err.find(bad), std::string::npos) << run.err;
  std::cout << "valid model: info ok (" << info.out.size() << " bytes), run output '"
            << shorten(run.out, 80) << "'\n";
}

// Runs `slm info` and `slm run` on every variant and checks both. With info_may_succeed (damage
// that only the tokenizer sees), info may also exit 0, but never crash or print a bad error.
void check_corpus(const char* title, const TinyModel& base, const std::vector<Variant>& corpus,
                  bool info_may_succeed) {
  TempDir dir;
  {
    // The undamaged bytes must load: the damage, not the model, is what makes the others fail.
    const fs::path p = dir.path / "valid.gguf";
    write_file(p, base.to_bytes());
    const RunResult r = run_cli(info_args(p.string()));
    ASSERT_EQ(r.exit_code, 0) << "the undamaged model does not load: " << r.err;
  }

  int failures = 0;
  std::cout << title << ": " << corpus.size() << " files, `slm info` and `slm run`\n";
  for (size_t i = 0; i < corpus.size(); ++i) {
    const Variant& var = corpus[i];
    const std::string num = std::to_string(1000 + i).substr(1);
    const fs::path p = dir.path / ("damaged_" + num + ".gguf");
    write_file(p, var.bytes);
    const RunResult info = run_cli(info_args(p.string()));
    const RunResult run = run_cli(run_args(p.string()));
    const bool info_ok = info_may_succeed && info.exit_code == 0 && !info.timed_out &&
                         info.signal == 0 && info.err.empty();
    const std::string info_problem = info_ok ? "" : error_problem(info, p.string());
    const std::string run_problem = error_problem(run, p.string());
    EXPECT_EQ(info_problem, "") << var.name << ": slm info: stderr: " << shorten(info.err, 4000)
                                << "\nstdout: " << shorten(info.out, 400);
    EXPECT_EQ(run_problem, "") << var.name << ": slm run: stderr: " << shorten(run.err, 4000)
                               << "\nstdout: " << shorten(run.out, 400);
    failures += !info_problem.empty() + !run_problem.empty();

    // The log: variant -> message (the run message only where it differs).
    std::string info_msg = info_ok ? "(info: loads, exit 0)" : message_of(info);
    std::string run_msg = message_of(run);
    const std::string path = p.string();
    for (std::string* m : {&info_msg, &run_msg})
      for (size_t at; (at = m->find(path)) != std::string::npos;) m->replace(at, path.size(), "FILE");
    std::cout << "  " << std::left << std::setw(50) << var.name << " "
              << (info_problem.empty() ? "" : "[BAD: " + info_problem + "] ") << shorten(info_msg, 200)
              << "\n";
    if (run_msg != info_msg || !run_problem.empty())
      std::cout << "  " << std::setw(50) << "" << " run: "
                << (run_problem.empty() ? "" : "[BAD: " + run_problem + "] ") << shorten(run_msg, 200)
                << "\n";
  }
  std::cout << title << ": " << corpus.size() << " files, " << 2 * corpus.size() << " runs, "
            << failures << " not clean\n";
}

// Damage only the tokenizer notices: `slm info` does not read the tokenizer, `slm run` must fail.
std::vector<Variant> make_tokenizer_corpus(const TinyModel& base) {
  std::vector<Variant> out;
  auto add_model = [&](std::string name, const std::function<void(TinyModel&)>& change) {
    TinyModel m = base;
    change(m);
    out.push_back({std::move(name), m.to_bytes()});
  };
  add_model("tokenizer.ggml.model missing", [](TinyModel& m) { m.remove("tokenizer.ggml.model"); });
  add_model("tokenizer.ggml.model 'sentencepiece-xyz'",
            [](TinyModel& m) { m.set("tokenizer.ggml.model", GGUFValue::str("sentencepiece-xyz")); });
  add_model("tokenizer.ggml.model as uint32",
            [](TinyModel& m) { m.set("tokenizer.ggml.model", GGUFValue::u32(1)); });
  add_model("tokenizer.ggml.model 'gpt2' without pre", [](TinyModel& m) {
    m.set("tokenizer.ggml.model", GGUFValue::str("gpt2"));
  });
  add_model("tokenizer.ggml.model 'gpt2' without merges", [](TinyModel& m) {
    m.set("tokenizer.ggml.model", GGUFValue::str("gpt2"));
    m.set("tokenizer.ggml.pre", GGUFValue::str("llama-bpe"));
  });
  add_model("tokenizer.ggml.tokens as an int32 array", [](TinyModel& m) {
    const size_t n_tok = m.find("tokenizer.ggml.tokens")->array_size();
    m.set("tokenizer.ggml.tokens", GGUFValue::i32s(std::vector<int32_t>(n_tok, 7)));
  });
  add_model("tokenizer.ggml.tokens as a string",
            [](TinyModel& m) { m.set("tokenizer.ggml.tokens", GGUFValue::str("<unk>")); });
  add_model("duplicate token text", [](TinyModel& m) {
    GGUFValue& toks = *m.find("tokenizer.ggml.tokens");
    std::vector<std::string> words = toks.as_strings();
    words.at(5) = "<s>";  // <0x02> -> <s>
    toks = GGUFValue::strings(words);
  });
  add_model("tokenizer.ggml.scores one short",
            [](TinyModel& m) { drop_last(*m.find("tokenizer.ggml.scores")); });
  add_model("tokenizer.ggml.scores as strings",
            [](TinyModel& m) { m.set("tokenizer.ggml.scores", GGUFValue::strings({"1", "2"})); });
  add_model("tokenizer.ggml.token_type one short",
            [](TinyModel& m) { drop_last(*m.find("tokenizer.ggml.token_type")); });
  add_model("tokenizer.ggml.token_type as floats",
            [](TinyModel& m) { m.set("tokenizer.ggml.token_type", GGUFValue::f32s({1.0f})); });
  add_model("tokenizer.ggml.bos_token_id as a string",
            [](TinyModel& m) { m.set("tokenizer.ggml.bos_token_id", GGUFValue::str("1")); });
  add_model("tokenizer.ggml.add_bos_token as a string",
            [](TinyModel& m) { m.set("tokenizer.ggml.add_bos_token", GGUFValue::str("yes")); });
  return out;
}

TEST(CliDamagedGguf, EveryDamagedFileFailsCleanly) {
  const TinyModel base = base_model();
  const std::vector<Variant> corpus = make_corpus(base);
  ASSERT_GE(corpus.size(), 40u);
  check_corpus("damaged GGUF corpus", base, corpus, /*info_may_succeed=*/false);
}

// A well-formed file whose weights are in a type slm has no kernels for (IQ2_XXS: its grids are
// not implemented): `slm info` and `slm run` fail saying which tensor, what slm runs, and what
// to do instead.
TEST(CliDamagedGguf, UnsupportedWeightTypeSaysWhatToDo) {
  slm::test::TinyModelOptions o;
  o.n_embd = 256;  // whole 256-value super-blocks
  TinyModel m = slm::test::make_tiny_llama(o);
  slm::test::TinyTensor* t = m.tensor("blk.0.attn_q.weight");
  ASSERT_NE(t, nullptr);
  t->type = DType::IQ2_XXS;
  t->data.assign(slm::row_size(DType::IQ2_XXS, t->ne[0]) * static_cast<size_t>(t->ne[1]), 0);
  TempDir dir;
  const fs::path p = dir.path / "iq2.gguf";
  write_file(p, m.to_bytes());
  for (const auto& args : {info_args(p.string()), run_args(p.string())}) {
    const RunResult r = run_cli(args);
    EXPECT_EQ(r.signal, 0) << args[0];
    EXPECT_EQ(r.exit_code, 1) << args[0];
    for (const char* want : {"blk.0.attn_q.weight", "iq2_xxs", "cannot compute with yet", "q4_K", "iq4_nl",
                             "slm quantize"})
      EXPECT_NE(r.err.find(want), std::string::npos) << args[0] << ": " << want << " not in: " << r.err;
  }
  // `slm info` still describes the file as far as its header goes (as gguf-dump would) before
  // it says it cannot run it.
  const RunResult info = run_cli(info_args(p.string()));
  for (const char* want : {"architecture:  llama", "n_embd:        256", "iq2_xxs      1 tensors", "f32 ",
                           "runs in slm:   no"})
    EXPECT_NE(info.out.find(want), std::string::npos) << want << " not in: " << info.out;
}

TEST(CliDamagedGguf, DamagedTokenizerFailsRunCleanly) {
  const TinyModel base = base_model();
  check_corpus("damaged tokenizer corpus", base, make_tokenizer_corpus(base),
               /*info_may_succeed=*/true);
}

}  // namespace
