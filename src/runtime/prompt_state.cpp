#include "runtime/prompt_state.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string_view>

#include "core/error.h"
#include "core/whole_file.h"

namespace slm {

namespace {
constexpr char kStateMagic[8] = {'S', 'L', 'M', 'P', 'C', 'A', 'C', '1'};

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

constexpr uint64_t kFnvBasis = 1469598103934665603ull, kFnvPrime = 1099511628211ull;
}  // namespace

std::string prompt_state_identity(const Model& model, const LoraSet* lora, std::span<const float> scales,
                                  KVTypes types) {
  const HParams& hp = model.hparams();
  const GGUFFile& f = model.gguf();
  uint64_t h = kFnvBasis;
  const auto& tensors = f.tensors();
  if (!tensors.empty() && tensors[0].file) {
    // From the file (each part of a split model), not the mapping, which repacking may have
    // released.
    std::vector<uint8_t> buf(4096);
    for (const GGUFFile::Part& part : f.parts()) {
      const uint64_t size = part.file->size(), lo = part.data_offset, span = size > lo ? size - lo : 0;
      for (uint64_t i = 0; i < 8 && span > 0; ++i) {
        const uint64_t at = lo + span * i / 8;
        const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - at));
        part.file->read_at(at, buf.data(), n);
        for (size_t j = 0; j < n; ++j) h = (h ^ buf[j]) * kFnvPrime;
      }
    }
  }
  std::string adapters = "none";
  if (lora && !lora->empty()) {
    adapters.clear();
    for (size_t i = 0; i < lora->adapters.size(); ++i) {
      const LoraAdapter& a = *lora->adapters[i];
      uint64_t ah = kFnvBasis;
      for (const LoraTensor& t : a.tensors)
        for (size_t j = 0; j < std::min<size_t>(t.a.size(), 64); ++j) {
          uint32_t bits;
          std::memcpy(&bits, &t.a[j], sizeof bits);
          ah = (ah ^ bits) * kFnvPrime;
        }
      adapters += fmt::format("{}{} parameters, alpha {}, {:016x} at {}", i ? "; " : "", a.n_params(), a.alpha, ah,
                              i < scales.size() ? scales[i] : 1.0f);
    }
  }
  return fmt::format("{} with {} layers, {} embedding, {} tokens; a file of {} bytes and {} tensors, weights {:016x}; "
                     "LoRA {}; cache {}",
                     hp.arch, hp.n_layer, hp.n_embd, hp.n_vocab, f.file_size(), tensors.size(), h, adapters,
                     kv_types_name(types));
}

size_t write_prompt_state(const std::string& path, const PromptState& state) {
  std::string out(kStateMagic, sizeof kStateMagic);
  put(out, static_cast<uint32_t>(state.identity.size()));
  out += state.identity;
  put(out, static_cast<uint32_t>(state.tokens.size()));
  out.append(reinterpret_cast<const char*>(state.tokens.data()), state.tokens.size() * sizeof(int32_t));
  put(out, static_cast<uint64_t>(state.record.size()));
  out += state.record;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) fail("prompt cache {}: cannot write {}: {}", path, tmp, std::strerror(errno));
    f.write(out.data(), static_cast<std::streamsize>(out.size()));
    if (!f.flush()) {
      const int err = errno;
      std::remove(tmp.c_str());
      fail("prompt cache {}: writing {} failed: {}", path, tmp, std::strerror(err));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    fail("prompt cache {}: cannot rename {} to it: {}", path, tmp, std::strerror(err));
  }
  return out.size();
}

PromptState read_prompt_state(const std::string& path, const std::string& identity, int64_t n_vocab) {
  const std::string in = read_whole_file(path, "prompt cache");
  size_t at = 0;
  auto take = [&](size_t n, const char* what) {
    if (in.size() - at < n) fail("prompt cache {}: cut short inside {} ({} bytes)", path, what, in.size());
    const std::string_view v(in.data() + at, n);
    at += n;
    return v;
  };
  auto get = [&]<class T>(T, const char* what) {
    T v;
    std::memcpy(&v, take(sizeof v, what).data(), sizeof v);
    return v;
  };
  const std::string_view magic(kStateMagic, sizeof kStateMagic);
  if (magic.substr(0, std::min(in.size(), magic.size())) != std::string_view(in).substr(0, magic.size()))
    fail("prompt cache {}: not a prompt cache file of slm (its first bytes are wrong)", path);
  take(magic.size(), "its header");
  PromptState st;
  st.identity = std::string(take(get(uint32_t{}, "its header"), "its header"));
  if (st.identity != identity)
    fail("prompt cache {} was made for another model or settings: it says \"{}\", this run is \"{}\"", path,
         st.identity, identity);
  const uint32_t n_tokens = get(uint32_t{}, "its tokens");
  const std::string_view token_bytes = take(static_cast<size_t>(n_tokens) * sizeof(int32_t), "its tokens");
  st.tokens.resize(n_tokens);
  std::memcpy(st.tokens.data(), token_bytes.data(), token_bytes.size());
  for (const int32_t t : st.tokens)
    if (t < 0 || t >= n_vocab) fail("prompt cache {}: token {} is outside the vocabulary (0..{})", path, t, n_vocab - 1);
  const uint64_t record_size = get(uint64_t{}, "its cache");
  if (record_size > in.size() - at) fail("prompt cache {}: cut short inside its cache ({} bytes)", path, in.size());
  if (at + record_size != in.size()) fail("prompt cache {}: {} bytes past its end", path, in.size() - at - record_size);
  st.record = in.substr(at, static_cast<size_t>(record_size));
  return st;
}

std::vector<int32_t> restore_prompt_state(KVCache& cache, int seq, PromptState&& state, const std::string& path) {
  try {
    cache.restore_seq(seq, state.record);
  } catch (const Error& e) {
    fail("prompt cache {}: {}", path, e.what());
  }
  if (cache.seq_length(seq) != static_cast<int32_t>(state.tokens.size())) {
    const int32_t rows = cache.seq_length(seq);
    cache.truncate(seq, 0);
    fail("prompt cache {}: it holds {} tokens and the cache rows of {}", path, state.tokens.size(), rows);
  }
  return std::move(state.tokens);
}

}  // namespace slm
