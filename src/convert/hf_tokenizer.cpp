#include "convert/hf_tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "convert/json_file.h"
#include "core/error.h"
#include "core/whole_file.h"

namespace slm::convert {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Token types as GGUF stores them (llama.cpp's LLAMA_TOKEN_TYPE_*).
constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;
constexpr int64_t kMaxVocab = int64_t{1} << 24;

// The special-token ids a SentencePiece model's trainer recorded (its defaults: unk 0, bos 1,
// eos 2, no pad).
struct SpmIds {
  bool present = false;
  int64_t unk = 0, bos = 1, eos = 2, pad = -1;
};

// The pre-tokenizer regexes of the families slm's BPE implements, exactly as the
// tokenizer.json files of those models spell them. llama.cpp identifies a pre-tokenizer by
// hashing the ids of a probe text, which needs a working tokenizer; comparing the regex itself
// is what we can do without one, and it is exact: any other regex splits some text differently.
struct KnownPre {
  const char* name;
  const char* family;
  const char* regex;
};
const std::array<KnownPre, 2> kKnownPre = {{
    {"llama-bpe", "Llama 3",
     R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"},
    {"qwen2", "Qwen2",
     R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"},
}};

std::optional<json> read_json_if_present(const fs::path& p) {
  if (!fs::is_regular_file(p)) return std::nullopt;
  json j = read_json_file(p.string());
  if (!j.is_object()) fail("{}: not a JSON object", p.string());
  return j;
}

std::string str_field(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The regex of a byte-level BPE pre-tokenizer: Sequence[Split(Regex, Isolated), ByteLevel
// without its own regex]. Anything else is described in the error.
std::string pre_tokenizer_regex(const json& tj, const std::string& path) {
  auto pt = tj.find("pre_tokenizer");
  if (pt == tj.end() || pt->is_null()) fail("{}: no pre_tokenizer (slm converts byte-level BPE tokenizers)", path);
  const std::string type = str_field(*pt, "type");
  if (type == "ByteLevel") {
    auto ur = pt->find("use_regex");
    if (ur == pt->end() || (ur->is_boolean() && ur->get<bool>()))
      fail("{}: pre-tokenizer is ByteLevel with GPT-2's built-in regex, which slm does not implement "
           "(it knows Llama 3's -> llama-bpe and Qwen2's -> qwen2)", path);
  }
  if (type != "Sequence") fail("{}: pre-tokenizer of type '{}' is not supported: {}", path, type, pt->dump());
  // (find, not operator[]: nlohmann's const operator[] on a missing key is undefined behaviour)
  auto li = pt->find("pretokenizers");
  if (li == pt->end() || !li->is_array()) fail("{}: pre-tokenizer Sequence without a list: {}", path, pt->dump());
  const json& list = *li;
  std::string regex;
  bool byte_level = false;
  for (const json& p : list) {
    const std::string t = str_field(p, "type");
    if (t == "Split" && regex.empty()) {
      const json pat = p.contains("pattern") ? p["pattern"] : json();
      if (!pat.is_object() || !pat.contains("Regex") || !pat["Regex"].is_string())
        fail("{}: pre-tokenizer Split without a Regex pattern: {}", path, p.dump());
      if (str_field(p, "behavior") != "Isolated" || (p.contains("invert") && p["invert"] == true))
        fail("{}: pre-tokenizer Split with behavior '{}' is not supported (only Isolated): {}", path,
             str_field(p, "behavior"), p.dump());
      regex = pat["Regex"].get<std::string>();
    } else if (t == "ByteLevel" && !byte_level) {
      if (p.contains("use_regex") && p["use_regex"] == true)
        fail("{}: pre-tokenizer ByteLevel adds GPT-2's regex after the Split, which slm does not "
             "implement: {}", path, pt->dump());
      byte_level = true;
    } else {
      fail("{}: pre-tokenizer step '{}' is not supported (regex so far: {}): {}", path, t,
           regex.empty() ? "none" : regex, p.dump());
    }
  }
  if (regex.empty() || !byte_level)
    fail("{}: pre-tokenizer is not a byte-level BPE one (Split + ByteLevel): {}", path, pt->dump());
  return regex;
}

// llama.cpp's does_token_look_special(): added tokens shaped like control tokens are CONTROL
// even when tokenizer.json does not mark them special.
bool looks_special(const std::string& t) {
  auto wrapped = [&](std::string_view open, std::string_view close) {
    return t.size() >= open.size() + close.size() && t.compare(0, open.size(), open) == 0 &&
           t.compare(t.size() - close.size(), close.size(), close) == 0;
  };
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || wrapped("<|", "|>") ||
         wrapped("<\xEF\xBD\x9C", "\xEF\xBD\x9C>") || wrapped("<unused", ">");
}

// The id of an added_tokens_decoder entry ("128000": {...}).
int64_t id_of_key(const std::string& k, const std::string& where) {
  int64_t id = 0;
  if (k.empty() || k.size() > 9 || k.find_first_not_of("0123456789") != std::string::npos)
    fail("{}: added_tokens_decoder key '{}' is not a token id", where, k);
  for (char c : k) id = id * 10 + (c - '0');
  return id;
}

void set_or_replace(std::vector<std::pair<std::string, bool>>& v, const std::string& k, bool value) {
  for (auto& [key, val] : v)
    if (key == k) { val = value; return; }
  v.emplace_back(k, value);
}

// Texts of end-of-turn tokens: which of generation_config.json's extra EOS ids is the EOT.
bool is_turn_end_text(const std::string& t) {
  return t == "<|eot_id|>" || t == "<|im_end|>" || t == "<|end|>" || t == "<end_of_turn>" ||
         t == "<|endoftext|>" || t == "<|end_of_text|>";
}

}  // namespace

// ---- SentencePiece (tokenizer.model) --------------------------------------------------------

// Just enough of protobuf's wire format to read sentencepiece_model.proto's ModelProto: the
// pieces (1: piece, 2: score, 3: type), TrainerSpec (3: model_type, 35: byte_fallback,
// 40-43: unk/bos/eos/pad ids) and NormalizerSpec (1: name, 3: add_dummy_prefix,
// 4: remove_extra_whitespaces). Every read is bounds-checked: a damaged file is an error.
class Pb {
 public:
  Pb(std::string_view data, const std::string& path) : p_(data.data()), end_(data.data() + data.size()), path_(path) {}
  bool done() const { return p_ >= end_; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) bad("a number runs past the end");
      const uint8_t b = static_cast<uint8_t>(*p_++);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    bad("a number is longer than 10 bytes");
  }
  // The next field's number and wire type.
  std::pair<uint32_t, uint32_t> key() {
    const uint64_t k = varint();
    return {static_cast<uint32_t>(k >> 3), static_cast<uint32_t>(k & 7)};
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > static_cast<uint64_t>(end_ - p_)) bad("a field runs past the end");
    std::string_view s(p_, static_cast<size_t>(n));
    p_ += n;
    return s;
  }
  float fixed32() {
    if (end_ - p_ < 4) bad("a number runs past the end");
    uint32_t u;
    std::memcpy(&u, p_, 4);
    p_ += 4;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: if (end_ - p_ < 8) bad("a field runs past the end"); p_ += 8; break;
      case 2: bytes(); break;
      case 5: fixed32(); break;
      default: bad(fmt::format("wire type {} is not protobuf's", wire));
    }
  }
  [[noreturn]] void bad(const std::string& what) const {
    fail("{}: not a SentencePiece model: {} (damaged or not protobuf)", path_, what);
  }

 private:
  const char* p_;
  const char* end_;
  std::string path_;
};

SpmIds read_spm_vocab(const fs::path& p, int64_t& n_vocab, const json& tj, const std::optional<json>& tc, HfVocab& v) {
  const std::string path = p.string();
  std::string data, why;
  if (!try_read_whole_file(path, data, why)) fail("{}: {}", path, why);
  struct Piece { std::string text; float score = 0; int type = 1; };
  std::vector<Piece> pieces;
  int model_type = 1;  // UNIGRAM, protobuf's default
  bool byte_fallback = false, add_dummy_prefix = true, remove_extra_ws = true, escape_ws = true, ws_suffix = false;
  std::string normalizer = "nmt_nfkc", charsmap;
  SpmIds ids;
  ids.present = true;
  Pb pb(data, path);
  while (!pb.done()) {
    const auto [field, wire] = pb.key();
    if (field == 1 && wire == 2) {
      Pb m(pb.bytes(), path);
      Piece pc;
      while (!m.done()) {
        const auto [f, w] = m.key();
        if (f == 1 && w == 2) pc.text = std::string(m.bytes());
        else if (f == 2 && w == 5) pc.score = m.fixed32();
        else if (f == 3 && w == 0) pc.type = static_cast<int>(m.varint());
        else m.skip(w);
      }
      pieces.push_back(std::move(pc));
    } else if (field == 2 && wire == 2) {
      Pb m(pb.bytes(), path);
      while (!m.done()) {
        const auto [f, w] = m.key();
        // int32 fields: negative values (-1: none) are sign-extended to 64 bits on the wire.
        auto i32 = [&] { return static_cast<int64_t>(static_cast<int32_t>(m.varint())); };
        if (f == 3 && w == 0) model_type = static_cast<int>(m.varint());
        else if (f == 24 && w == 0) ws_suffix = m.varint() != 0;
        else if (f == 35 && w == 0) byte_fallback = m.varint() != 0;
        else if (f == 40 && w == 0) ids.unk = i32();
        else if (f == 41 && w == 0) ids.bos = i32();
        else if (f == 42 && w == 0) ids.eos = i32();
        else if (f == 43 && w == 0) ids.pad = i32();
        else m.skip(w);
      }
    } else if (field == 3 && wire == 2) {
      Pb m(pb.bytes(), path);
      while (!m.done()) {
        const auto [f, w] = m.key();
        if (f == 1 && w == 2) normalizer = std::string(m.bytes());
        else if (f == 2 && w == 2) charsmap = std::string(m.bytes());
        else if (f == 3 && w == 0) add_dummy_prefix = m.varint() != 0;
        else if (f == 4 && w == 0) remove_extra_ws = m.varint() != 0;
        else if (f == 5 && w == 0) escape_ws = m.varint() != 0;
        else m.skip(w);
      }
    } else {
      pb.skip(wire);
    }
  }
  if (pieces.empty()) fail("{}: not a SentencePiece model: no pieces", path);
  // BPE type: slm's (and llama.cpp's) "llama" tokenizer, merges by piece score. Unigram:
  // "t5" (llama.cpp's UGM), Viterbi over the pieces after the model's own normalisation.
  if (model_type != 1 && model_type != 2)
    fail("{}: SentencePiece model type {} ({}) is not supported; slm converts BPE and unigram models", path,
         model_type, model_type == 3 ? "word" : model_type == 4 ? "char" : "unknown");
  if (ws_suffix || !escape_ws)
    fail("{}: SentencePiece model with {}; slm (like llama.cpp's converter) does not support it", path,
         ws_suffix ? "treat_whitespace_as_suffix" : "escape_whitespaces off");
  if (model_type == 1) {
    if (byte_fallback)
      std::fprintf(stderr, "slm: warning: %s is a unigram model with byte fallback; slm and llama.cpp tokenize "
                   "characters outside its pieces as <unk>, where SentencePiece gives their bytes\n", path.c_str());
    v.model = "t5";
    v.remove_extra_whitespaces = remove_extra_ws;
    v.precompiled_charsmap = std::move(charsmap);
  } else if (normalizer != "identity" || remove_extra_ws) {
    // The "llama" tokenizer (slm's and llama.cpp's) applies no normalisation (NFKC, collapsing
    // whitespace): it tokenizes raw text as Llama's identity-normalised models expect, so ids
    // differ from SentencePiece's only on text that normalisation would change.
    std::fprintf(stderr, "slm: warning: %s normalizes text (%s%s); slm tokenizes BPE-type models without "
                 "normalization, so ids differ from SentencePiece's on text that normalization changes\n",
                 path.c_str(), normalizer.c_str(), remove_extra_ws ? ", extra whitespace removed" : "");
  }
  // BPE type: byte pieces are marked BYTE below; the tokenizer falls back on them.

  const int64_t n_pieces = static_cast<int64_t>(pieces.size());
  if (n_vocab == 0) n_vocab = n_pieces;
  if (v.model.empty()) v.model = "llama";
  v.pre = "default";
  v.add_space_prefix = add_dummy_prefix;
  // llama.cpp's _set_vocab_sentencepiece: "[PAD<i>]" fillers, score -10000, UNUSED; pieces
  // keep their type except that user-defined pieces count as normal.
  v.tokens.assign(static_cast<size_t>(n_vocab), {});
  v.scores.assign(static_cast<size_t>(n_vocab), -10000.0f);
  v.types.assign(static_cast<size_t>(n_vocab), kUnused);
  for (int64_t i = 0; i < n_vocab; ++i) v.tokens[static_cast<size_t>(i)] = fmt::format("[PAD{}]", i);
  for (int64_t i = 0; i < std::min(n_pieces, n_vocab); ++i) {
    const Piece& pc = pieces[static_cast<size_t>(i)];
    int32_t type = kNormal;
    if (pc.type == 2) type = 2;        // UNKNOWN
    else if (pc.type == 3) type = kControl;
    else if (pc.type == 5) type = kUnused;
    else if (pc.type == 6) type = 6;   // BYTE
    v.tokens[static_cast<size_t>(i)] = pc.text;
    v.scores[static_cast<size_t>(i)] = pc.score;
    v.types[static_cast<size_t>(i)] = type;
  }
  // Added tokens (tokenizer_config.json's added_tokens_decoder, then tokenizer.json's) replace
  // what is at their ids: user-defined, or control when special.
  auto add = [&](int64_t id, const std::string& text, bool special) {
    if (id < 0 || id >= n_vocab) return;
    v.tokens[static_cast<size_t>(id)] = text;
    v.scores[static_cast<size_t>(id)] = -1000.0f;
    v.types[static_cast<size_t>(id)] = special ? kControl : kUserDefined;
  };
  if (tc && tc->contains("added_tokens_decoder") && (*tc)["added_tokens_decoder"].is_object())
    for (auto it = (*tc)["added_tokens_decoder"].begin(); it != (*tc)["added_tokens_decoder"].end(); ++it) {
      const json& a = it.value();
      if (a.contains("content") && a["content"].is_string())
        add(id_of_key(it.key(), path), a["content"].get<std::string>(), a.contains("special") && a["special"] == true);
    }
  if (tj.is_object() && tj.contains("added_tokens") && tj["added_tokens"].is_array())
    for (const json& a : tj["added_tokens"])
      if (a.contains("id") && a["id"].is_number_integer() && a.contains("content") && a["content"].is_string())
        add(a["id"].get<int64_t>(), a["content"].get<std::string>(), a.contains("special") && a["special"] == true);
  return ids;
}

// tokenizer.json's byte-level BPE: vocabulary, token types, merges, pre-tokenizer.
void read_bpe_vocab(const json& tj, const std::string& path, int64_t& n_vocab, HfVocab& v) {
  // (find, not `contains ? tj["model"] : json()`: the conditional's type is a json value, so
  // that form copied the whole vocabulary and merges, ~0.2 s for Llama 3's.)
  const auto model_it = tj.find("model");
  if (model_it == tj.end() || !model_it->is_object()) fail("{}: no model object", path);
  const json& model = *model_it;
  const std::string mtype = str_field(model, "type");
  if (mtype != "BPE")
    fail("{}: tokenizer model type '{}' is not supported (slm converts byte-level BPE)", path,
         mtype.empty() ? "(none)" : mtype);
  if (model.contains("byte_fallback") && model["byte_fallback"] == true)
    fail("{}: a BPE model with byte_fallback (SentencePiece-style, Llama 2) is not supported; "
         "slm converts byte-level BPE", path);
  if (tj.contains("decoder") && !tj["decoder"].is_null() && str_field(tj["decoder"], "type") != "ByteLevel")
    fail("{}: decoder of type '{}' is not byte-level; slm converts byte-level BPE", path,
         str_field(tj["decoder"], "type"));
  if (tj.contains("normalizer") && !tj["normalizer"].is_null()) {
    // Qwen2's NFC normalizer is ignored by llama.cpp as well; anything else would change ids.
    const std::string nt = str_field(tj["normalizer"], "type");
    if (nt != "NFC") fail("{}: normalizer of type '{}' is not supported: {}", path, nt, tj["normalizer"].dump());
  }

  v.model = "gpt2";
  v.pre_regex = pre_tokenizer_regex(tj, path);
  for (const KnownPre& k : kKnownPre)
    if (v.pre_regex == k.regex) v.pre = k.name;
  if (v.pre.empty()) {
    std::string known;
    for (const KnownPre& k : kKnownPre) known += fmt::format("{}{} -> {}", known.empty() ? "" : ", ", k.family, k.name);
    fail("{}: pre-tokenizer regex not recognised (slm knows {}): {}", path, known, v.pre_regex);
  }

  // Vocabulary: the model's token -> id map, then the added tokens (which may repeat some).
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail("{}: model.vocab is missing or not an object", path);
  const json& vocab = model["vocab"];
  // Validated first, then indexed by id in a vector (a std::map of 128k strings looked up id by
  // id was a cache miss per tree level, ~0.1 s of Llama 3's conversion).
  int64_t max_vocab_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
      fail("{}: vocab entry '{}' has no valid id", path, it.key());
    max_vocab_id = std::max(max_vocab_id, it.value().get<int64_t>());
  }
  // Ids index arrays of that size: a damaged id must not become a 100 GB allocation.
  if (max_vocab_id >= kMaxVocab)
    fail("{}: token id {} is beyond any real vocabulary ({} ids at most)", path, max_vocab_id, kMaxVocab);
  std::vector<const std::string*> by_id(static_cast<size_t>(max_vocab_id + 1), nullptr);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const std::string*& slot = by_id[static_cast<size_t>(it.value().get<int64_t>())];
    if (slot) fail("{}: id {} is given to both '{}' and '{}'", path, it.value().get<int64_t>(), *slot, it.key());
    slot = &it.key();
  }
  struct Added { std::string content; bool special; };
  std::map<int64_t, Added> added;
  if (tj.contains("added_tokens") && tj["added_tokens"].is_array()) {
    for (const json& a : tj["added_tokens"]) {
      if (!a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") || !a["content"].is_string())
        fail("{}: added token without id and content: {}", path, a.dump());
      const int64_t id = a["id"].get<int64_t>();
      if (id < 0) fail("{}: added token '{}' has a negative id", path, a["content"].get<std::string>());
      added[id] = {a["content"].get<std::string>(), a.contains("special") && a["special"] == true};
    }
  }
  int64_t max_id = max_vocab_id;
  if (!added.empty()) max_id = std::max(max_id, added.rbegin()->first);
  if (max_id < 0) fail("{}: the vocabulary is empty", path);
  if (max_id >= kMaxVocab) fail("{}: token id {} is beyond any real vocabulary ({} ids at most)", path, max_id, kMaxVocab);
  if (n_vocab == 0) n_vocab = max_id + 1;
  if (max_id >= n_vocab)
    fail("{}: token id {} does not fit the model's {} embedding rows (config.json vocab_size)", path, max_id, n_vocab);

  v.tokens.resize(static_cast<size_t>(n_vocab));
  v.types.resize(static_cast<size_t>(n_vocab));
  for (int64_t i = 0; i < n_vocab; ++i) {
    std::string text;
    int32_t type = kUnused;
    if (auto a = added.find(i); a != added.end()) {
      text = a->second.content;
      if (a->second.special || looks_special(text)) {
        type = kControl;
      } else {
        // User-defined tokens are matched as raw text: SentencePiece's U+2581 is a space there.
        for (size_t p; (p = text.find("\xE2\x96\x81")) != std::string::npos;) text.replace(p, 3, " ");
        type = kUserDefined;
      }
    } else if (i <= max_vocab_id && by_id[static_cast<size_t>(i)]) {
      text = *by_id[static_cast<size_t>(i)];
      type = kNormal;
    } else {
      text = fmt::format("[PAD{}]", i);  // llama.cpp's filler for ids nothing names
    }
    v.tokens[static_cast<size_t>(i)] = std::move(text);
    v.types[static_cast<size_t>(i)] = type;
  }

  // Merges: "a b" lines, or [a, b] pairs (transformers >= 4.45, which allows spaces inside a
  // part); pairs are written as lines with a space inside a part spelled as U+0120, as
  // llama.cpp's converter does.
  if (model.contains("merges") && model["merges"].is_array()) {
    v.merges.reserve(model["merges"].size());
    for (const json& m : model["merges"]) {
      if (m.is_string()) {
        v.merges.push_back(m.get<std::string>());
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        auto enc = [](std::string s) {
          for (size_t p; (p = s.find(' ')) != std::string::npos;) s.replace(p, 1, "\xC4\xA0");
          return s;
        };
        v.merges.push_back(enc(m[0].get<std::string>()) + " " + enc(m[1].get<std::string>()));
      } else {
        fail("{}: merge entry {} is neither \"a b\" nor [\"a\", \"b\"]", path, m.dump());
      }
    }
  }
  if (v.merges.empty()) fail("{}: a BPE model without merges", path);
}

HfVocab read_hf_vocab(const std::string& dir, int64_t n_vocab) {
  const fs::path d(dir);
  const fs::path tj_path = d / "tokenizer.json", spm_path = d / "tokenizer.model";
  const json tj = read_json_if_present(tj_path).value_or(json());  // null when the folder has none
  const std::optional<json> tc = read_json_if_present(d / "tokenizer_config.json");
  HfVocab v;
  // As llama.cpp's converters for these architectures: SentencePiece's tokenizer.model when
  // the folder has one (Llama 2, Gemma, Phi-3 ship both it and a tokenizer.json derived from
  // it), else tokenizer.json.
  SpmIds spm_ids;
  if (fs::is_regular_file(spm_path)) spm_ids = read_spm_vocab(spm_path, n_vocab, tj, tc, v);
  else if (tj.is_object()) read_bpe_vocab(tj, tj_path.string(), n_vocab, v);
  else fail("{}: no tokenizer.json or tokenizer.model in the folder", dir);
  n_vocab = static_cast<int64_t>(v.tokens.size());

  // Added tokens by text, in file order: where tokenizer_config.json's <type>_token names are
  // looked up (llama.cpp looks among tokenizer.json's added tokens only; a SentencePiece folder
  // without tokenizer.json has them in tokenizer_config.json's added_tokens_decoder).
  std::vector<std::pair<std::string, int64_t>> added_by_content;
  if (tj.is_object() && tj.contains("added_tokens") && tj["added_tokens"].is_array()) {
    for (const json& a : tj["added_tokens"])
      if (a.contains("id") && a["id"].is_number_integer() && a.contains("content") && a["content"].is_string())
        added_by_content.emplace_back(a["content"].get<std::string>(), a["id"].get<int64_t>());
  } else if (tc && tc->contains("added_tokens_decoder") && (*tc)["added_tokens_decoder"].is_object()) {
    for (auto it = (*tc)["added_tokens_decoder"].begin(); it != (*tc)["added_tokens_decoder"].end(); ++it)
      if (it.value().contains("content") && it.value()["content"].is_string())
        added_by_content.emplace_back(it.value()["content"].get<std::string>(), id_of_key(it.key(), dir));
  }

  // Special tokens, following llama.cpp's SpecialVocab: the post-processor's template decides
  // add_bos/add_eos, tokenizer_config.json's <type>_token names the tokens (looked up among the
  // added tokens), its add_<type>_token overrides the template, config.json's <type>_token_id
  // fills what is still missing.
  auto tc_token = [&](const std::string& typ) -> std::string {
    if (!tc) return {};
    auto it = tc->find(typ + "_token");
    if (it == tc->end()) return {};
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
      return (*it)["content"].get<std::string>();
    return {};
  };
  const std::string special_bos = tc_token("bos"), special_eos = tc_token("eos");
  if (tj.is_object() && tj.contains("post_processor") && tj["post_processor"].is_object()) {
    const json& pp = tj["post_processor"];
    std::vector<json> procs;
    if (pp.contains("processors") && pp["processors"].is_array()) procs.assign(pp["processors"].begin(), pp["processors"].end());
    else procs.push_back(pp);
    for (const json& p : procs) {
      const std::string t = str_field(p, "type");
      if (t == "RobertaProcessing" || t == "BertProcessing") {
        set_or_replace(v.add_special, "bos", true);
        set_or_replace(v.add_special, "eos", true);
      } else if (t == "TemplateProcessing" && p.contains("single") && p["single"].is_array() && p["single"].size() > 1) {
        const json& single = p["single"];
        auto special_at = [](const json& e) -> std::string {
          if (e.contains("SpecialToken") && e["SpecialToken"].contains("id") && e["SpecialToken"]["id"].is_string())
            return e["SpecialToken"]["id"].get<std::string>();
          return {};
        };
        const std::string first = special_at(single.front()), last = special_at(single.back());
        if (!first.empty()) set_or_replace(v.add_special, "bos", first == special_bos || (!tc && !first.empty()));
        if (!last.empty()) set_or_replace(v.add_special, "eos", last == special_eos || (!tc && !last.empty()));
      }
    }
  }
  auto set_special = [&](const std::string& typ, int64_t id) {
    if (id < 0 || id >= n_vocab) return;
    for (const auto& [k, _] : v.special_ids)
      if (k == typ) return;
    v.special_ids.emplace_back(typ, static_cast<uint32_t>(id));
  };
  auto added_id = [&](const std::string& content) -> int64_t {
    for (const auto& [c, id] : added_by_content)
      if (c == content) return id;
    return -1;
  };
  static const char* const kTypes[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
  if (tc) {
    for (const char* typ : kTypes) {
      if (auto a = tc->find(std::string("add_") + typ + "_token"); a != tc->end() && a->is_boolean())
        set_or_replace(v.add_special, typ, a->get<bool>());
      if (const std::string t = tc_token(typ); !t.empty()) set_special(typ, added_id(t));
    }
  }
  auto ids_of = [](const json& o, const std::string& key) -> std::vector<int64_t> {
    auto it = o.find(key);
    if (it == o.end()) return {};
    if (it->is_number_integer()) return {it->get<int64_t>()};
    std::vector<int64_t> r;
    if (it->is_array())
      for (const json& x : *it)
        if (x.is_number_integer()) r.push_back(x.get<int64_t>());
    return r;
  };
  if (const auto cfg = read_json_if_present(d / "config.json")) {
    for (const char* typ : kTypes) {
      // A list (some configs give several EOS ids): llama.cpp's SpecialVocab skips non-ints.
      auto it = cfg->find(std::string(typ) + "_token_id");
      if (it != cfg->end() && it->is_number_integer()) set_special(typ, it->get<int64_t>());
    }
  }
  // generation_config.json: BOS/EOS when nothing else named them, and the end-of-turn token
  // among its EOS list (chat models stop on it; llama.cpp guesses it from the token texts).
  if (const auto gc = read_json_if_present(d / "generation_config.json")) {
    const auto bos = ids_of(*gc, "bos_token_id");
    const auto eos = ids_of(*gc, "eos_token_id");
    if (!bos.empty()) set_special("bos", bos.front());
    if (!eos.empty()) set_special("eos", eos.front());
    int64_t eos_id = -1;
    for (const auto& [k, id] : v.special_ids)
      if (k == "eos") eos_id = id;
    for (int64_t id : eos)
      if (id != eos_id && id >= 0 && id < n_vocab && is_turn_end_text(v.tokens[static_cast<size_t>(id)])) {
        set_special("eot", id);
        break;
      }
  }
  // A bare SentencePiece model: the ids its trainer recorded.
  if (spm_ids.present) {
    set_special("bos", spm_ids.bos);
    set_special("eos", spm_ids.eos);
    set_special("unk", spm_ids.unk);
    set_special("pad", spm_ids.pad);
  }
  if (v.model == "t5") {
    // llama.cpp's defaults for "t5" vocabularies are T5's (no BOS, EOS appended); the causal
    // models converted here add BOS and no EOS (Hugging Face's LlamaTokenizer defaults), so
    // the file says so unless the tokenizer config already did.
    auto has = [&](const char* typ) {
      return std::any_of(v.add_special.begin(), v.add_special.end(), [&](const auto& e) { return e.first == typ; });
    };
    const bool bos_known = std::any_of(v.special_ids.begin(), v.special_ids.end(), [](const auto& e) { return e.first == "bos"; });
    if (!has("bos")) v.add_special.emplace_back("bos", bos_known);
    if (!has("eos")) v.add_special.emplace_back("eos", false);
  }

  // Chat template: tokenizer_config.json's, else chat_template.jinja, else chat_template.json.
  json tmpl;
  if (tc && tc->contains("chat_template")) tmpl = (*tc)["chat_template"];
  if (tmpl.is_null()) {
    if (fs::is_regular_file(d / "chat_template.jinja")) {
      tmpl = read_whole_file((d / "chat_template.jinja").string(), "chat template file");
    } else if (const auto ct = read_json_if_present(d / "chat_template.json")) {
      if (ct->contains("chat_template")) tmpl = (*ct)["chat_template"];
    }
  }
  if (tmpl.is_string()) {
    v.chat_template = tmpl.get<std::string>();
  } else if (tmpl.is_array()) {
    // Several named templates: "default" is the chat template, the others keep their names.
    for (const json& t : tmpl) {
      const std::string name = str_field(t, "name"), text = str_field(t, "template");
      if (name.empty()) continue;
      if (name == "default") v.chat_template = text;
      else v.named_chat_templates.emplace_back(name, text);
    }
  } else if (!tmpl.is_null()) {
    fail("{}: chat_template is neither a string nor a list of named templates", (d / "tokenizer_config.json").string());
  }
  return v;
}

void add_vocab_metadata(GGUFWriter& w, const HfVocab& v) {
  w.set("tokenizer.ggml.model", GGUFValue::str(v.model));
  w.set("tokenizer.ggml.pre", GGUFValue::str(v.pre));
  w.set("tokenizer.ggml.tokens", GGUFValue::strings(v.tokens));
  if (!v.scores.empty()) w.set("tokenizer.ggml.scores", GGUFValue::f32s(v.scores));
  w.set("tokenizer.ggml.token_type", GGUFValue::i32s(v.types));
  if (!v.merges.empty()) w.set("tokenizer.ggml.merges", GGUFValue::strings(v.merges));
  static const std::map<std::string, std::string> kKeys = {
      {"bos", "bos_token_id"},        {"eos", "eos_token_id"},     {"eot", "eot_token_id"},
      {"eom", "eom_token_id"},        {"unk", "unknown_token_id"}, {"sep", "seperator_token_id"},
      {"pad", "padding_token_id"},    {"cls", "cls_token_id"},     {"mask", "mask_token_id"}};
  for (const auto& [typ, id] : v.special_ids) {
    auto it = kKeys.find(typ);
    if (it != kKeys.end()) w.set("tokenizer.ggml." + it->second, GGUFValue::u32(id));
  }
  for (const auto& [typ, on] : v.add_special)
    if (typ == "bos" || typ == "eos" || typ == "sep")
      w.set("tokenizer.ggml.add_" + typ + "_token", GGUFValue::boolean(on));
  if (v.add_space_prefix) w.set("tokenizer.ggml.add_space_prefix", GGUFValue::boolean(*v.add_space_prefix));
  if (v.remove_extra_whitespaces)
    w.set("tokenizer.ggml.remove_extra_whitespaces", GGUFValue::boolean(*v.remove_extra_whitespaces));
  if (!v.precompiled_charsmap.empty())
    w.set("tokenizer.ggml.precompiled_charsmap", GGUFValue::bytes(v.precompiled_charsmap));
  if (v.chat_template) w.set("tokenizer.chat_template", GGUFValue::str(*v.chat_template));
  if (!v.named_chat_templates.empty()) {
    std::vector<std::string> names;
    for (const auto& [name, text] : v.named_chat_templates) {
      w.set("tokenizer.chat_template." + name, GGUFValue::str(text));
      names.push_back(name);
    }
    w.set("tokenizer.chat_templates", GGUFValue::strings(names));
  }
}

}  // namespace slm::convert
