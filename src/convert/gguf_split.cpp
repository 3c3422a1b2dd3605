#include "convert/gguf_split.h"

#include <cctype>
#include <filesystem>
#include <string_view>
#include <unordered_map>

#include "convert/progress.h"
#include "core/error.h"
#include "core/gguf.h"

namespace slm::convert {

namespace {

GGUFValue u16(uint64_t v) {
  GGUFValue out;
  out.type = GGUFType::UINT16;
  out.scalar = v;
  return out;
}

uint64_t padded(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

// Part `index` of n as llama-gguf-split writes it: the first carries the model's metadata, then
// the three split keys (appended, in this order); the others carry the split keys alone.
GGUFWriter part_writer(const GGUFFile& in, const std::vector<size_t>& tensors, size_t index, size_t n) {
  GGUFWriter w;
  if (index == 0) {
    for (const auto& [k, v] : in.metadata()) w.set(k, v);
    for (const char* k : kGGUFSplitKeys) w.remove(k);
  }
  w.set("split.no", u16(index));
  w.set("split.count", u16(n));
  w.set("split.tensors.count", GGUFValue::i32(static_cast<int32_t>(in.tensors().size())));
  w.set_alignment(static_cast<uint32_t>(in.alignment()));
  for (size_t i : tensors) {
    const TensorInfo& t = in.tensors()[i];
    w.add_tensor_info(t.name, t.type, t.ne);
  }
  return w;
}

// The parts holding each group of `in`'s tensors (indices, in order): their names and sizes.
std::vector<SplitPart> parts_of(const GGUFFile& in, const std::vector<std::vector<size_t>>& groups,
                                const std::string& out_prefix) {
  std::vector<SplitPart> parts;
  for (size_t p = 0; p < groups.size(); ++p) {
    SplitPart part;
    part.path = gguf_split_path(out_prefix, static_cast<int>(p), static_cast<int>(groups.size()));
    part.tensors = groups[p];
    const GGUFWriter w = part_writer(in, part.tensors, p, groups.size());
    part.bytes = w.header_size();
    for (size_t i : part.tensors) part.bytes += padded(in.tensors()[i].nbytes, in.alignment());
    parts.push_back(std::move(part));
  }
  return parts;
}

// Each tensor's bytes, copied from its file inside the kernel where it can.
void copy_tensor(const TensorInfo& t, const GGUFWriter::Sink& sink) {
  if (t.file) sink.copy_range(t.file->fd(), t.file_offset, static_cast<size_t>(t.nbytes));
  else sink(t.data, static_cast<size_t>(t.nbytes));
}

}  // namespace

std::vector<SplitPart> plan_split(const GGUFFile& in, const std::string& out_prefix, const SplitOptions& opts) {
  if (opts.max_bytes == 0 && opts.max_tensors < 1)
    fail("--split-max-tensors must be at least 1 (got {})", opts.max_tensors);
  const auto& tensors = in.tensors();
  std::vector<std::vector<size_t>> groups(1);
  if (opts.no_tensor_first_split && !tensors.empty()) groups.emplace_back();
  uint64_t data = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t bytes = padded(tensors[i].nbytes, in.alignment());
    std::vector<size_t>& cur = groups.back();
    const bool full = opts.max_bytes > 0 ? data + bytes > opts.max_bytes
                                         : cur.size() >= static_cast<size_t>(opts.max_tensors);
    if (full && !cur.empty()) {  // never an empty part: a tensor over the limit goes alone
      groups.emplace_back();
      data = 0;
    }
    groups.back().push_back(i);
    data += bytes;
  }
  if (groups.size() > 9999)
    fail("{}: {} parts would be more than the 9,999 a split model's names allow; raise the limit",
         in.path(), groups.size());
  return parts_of(in, groups, out_prefix);
}

void write_split(const GGUFFile& in, const std::vector<SplitPart>& parts, bool progress) {
  std::error_code ec;
  for (const SplitPart& p : parts)
    if (std::filesystem::exists(p.path, ec))
      fail("{}: already exists; remove it first (parts of an older split beside new ones would be "
           "read as one model)", p.path);
  uint64_t total = 0;
  for (const SplitPart& p : parts)
    for (size_t i : p.tensors) total += in.tensors()[i].nbytes;
  Progress bar("splitting", total, progress);
  size_t written = 0;
  try {
    for (size_t p = 0; p < parts.size(); ++p) {
      const GGUFWriter w = part_writer(in, parts[p].tensors, p, parts.size());
      w.write_streamed(parts[p].path, [&](size_t i, const GGUFWriter::Sink& sink) {
        const TensorInfo& t = in.tensors()[parts[p].tensors[i]];
        copy_tensor(t, sink);
        bar.advance(t.nbytes, t.name);
      });
      ++written;
    }
  } catch (...) {
    for (size_t p = 0; p < written; ++p) std::filesystem::remove(parts[p].path, ec);
    throw;
  }
  bar.finish();
}

std::vector<SplitPart> plan_split_like(const GGUFFile& in, const GGUFFile& like, const std::string& out_prefix) {
  const auto like_parts = like.parts();
  if (like_parts.size() < 2) fail("{}: not a split model; there are no parts to keep", like.path());
  const auto& tensors = in.tensors();
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < tensors.size(); ++i) index[tensors[i].name] = i;
  // In `like`'s order, part by part (llama-quantize sorts by part, then offset).
  std::vector<std::vector<size_t>> groups(like_parts.size());
  size_t placed = 0;
  for (const TensorInfo& t : like.tensors()) {
    const auto it = index.find(t.name);
    if (it == index.end()) continue;
    for (size_t p = 0; p < like_parts.size(); ++p)
      if (t.file == like_parts[p].file) {
        groups[p].push_back(it->second);
        ++placed;
      }
  }
  if (placed != tensors.size()) {
    for (const TensorInfo& t : tensors)
      if (!like.find_tensor(t.name))
        fail("{}: tensor {} is in none of the parts of {}; the parts cannot be kept", in.path(), t.name, like.path());
    fail("{}: {} tensors, of which {} were placed in the parts of {}", in.path(), tensors.size(), placed, like.path());
  }
  return parts_of(in, groups, out_prefix);
}

uint64_t parse_split_size(const std::string& s) {
  size_t digits = 0;
  while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) ++digits;
  const std::string unit = s.substr(digits);
  if (digits == 0 || digits > 12 || (unit != "M" && unit != "G"))
    fail("--split-max-size '{}': write a whole number followed by M (megabytes) or G (gigabytes), e.g. 2G", s);
  const uint64_t n = std::stoull(s.substr(0, digits));
  if (n == 0) fail("--split-max-size '{}': the size must be above 0", s);
  return n * (unit == "M" ? 1000 * 1000 : 1000 * 1000 * 1000);
}

std::string split_prefix_of(const std::string& out_path) {
  constexpr std::string_view ext = ".gguf";
  if (out_path.size() > ext.size() && out_path.ends_with(ext)) return out_path.substr(0, out_path.size() - ext.size());
  return out_path;
}

std::vector<SplitPart> split_written_model(const std::string& tmp_path, const std::string& whole_path,
                                           const std::function<std::vector<SplitPart>(const GGUFFile&)>& plan,
                                           bool progress) {
  std::error_code ec;
  std::vector<SplitPart> parts;
  try {
    {
      const auto whole = GGUFFile::open(tmp_path);
      parts = plan(*whole);
      if (parts.size() > 1) write_split(*whole, parts, progress);
    }
    if (parts.size() <= 1) {
      std::filesystem::rename(tmp_path, whole_path);  // replacing it, as writing it directly would
      return {};
    }
  } catch (...) {
    std::filesystem::remove(tmp_path, ec);
    throw;
  }
  std::filesystem::remove(tmp_path, ec);
  return parts;
}

void merge_split(const GGUFFile& in, const std::string& out_path, bool progress) {
  if (in.parts().size() < 2)
    fail("{}: not a split model (no split.count above 1); nothing to merge", in.path());
  std::error_code ec;
  if (std::filesystem::exists(out_path, ec)) fail("{}: already exists; remove it or choose another name", out_path);
  GGUFWriter w;
  for (const auto& [k, v] : in.metadata()) w.set(k, v);
  for (const char* k : kGGUFSplitKeys) w.remove(k);
  w.set_alignment(static_cast<uint32_t>(in.alignment()));
  uint64_t total = 0;
  for (const TensorInfo& t : in.tensors()) {
    w.add_tensor_info(t.name, t.type, t.ne);
    total += t.nbytes;
  }
  Progress bar("merging", total, progress);
  w.write_streamed(out_path, [&](size_t i, const GGUFWriter::Sink& sink) {
    const TensorInfo& t = in.tensors()[i];
    copy_tensor(t, sink);
    bar.advance(t.nbytes, t.name);
  });
  bar.finish();
}

}  // namespace slm::convert
