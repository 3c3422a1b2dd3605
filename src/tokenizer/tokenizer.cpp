// Loading a tokenizer from GGUF metadata and the model-independent parts of encoding and
// decoding. The rules mirror llama.cpp's llama_vocab (src/llama-vocab.cpp) closely, including
// its heuristics for special tokens, because the point is to produce the same ids.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <atomic>
#include <deque>
#include <future>
#include <span>
#include <fmt/format.h>

#include "core/error.h"
#include "core/gguf.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace slm {

namespace {

using tok::kAttrByte;
using tok::kAttrControl;
using tok::kAttrNormal;
using tok::kAttrRstrip;
using tok::kAttrLstrip;
using tok::kAttrUnknown;
using tok::kAttrUnused;
using tok::kAttrUserDefined;

enum class Kind { Spm, Bpe, Wpm, Ugm };

// Pre-tokenizer names llama.cpp maps to the two regex families implemented here, with the
// flags it sets for each name (llama_vocab::impl::load).
struct PreInfo {
  std::string_view name;
  tok::PreType type;
  bool ignore_merges;
  bool add_bos;
  bool clean_spaces;
};
constexpr std::array<PreInfo, 19> kPreTokenizers = {{
    {"llama3", tok::PreType::Llama3, true, true, true},
    {"llama-v3", tok::PreType::Llama3, true, true, true},
    {"llama-bpe", tok::PreType::Llama3, true, true, true},
    {"falcon3", tok::PreType::Llama3, true, true, true},
    {"falcon-h1", tok::PreType::Llama3, true, true, true},
    {"pixtral", tok::PreType::Llama3, true, true, true},
    {"midm-2.0", tok::PreType::Llama3, true, true, true},
    {"lfm2", tok::PreType::Llama3, true, true, true},
    {"jina-v5-nano", tok::PreType::Llama3, true, true, true},
    {"dbrx", tok::PreType::Llama3, false, false, true},
    {"smaug-bpe", tok::PreType::Llama3, false, false, true},
    {"qwen2", tok::PreType::Qwen2, false, false, false},
    {"deepseek-r1-qwen", tok::PreType::Qwen2, false, false, false},
    {"kormo", tok::PreType::Qwen2, false, false, false},
    {"f2llmv2", tok::PreType::Qwen2, false, false, false},
    {"hunyuan", tok::PreType::Qwen2, false, false, false},
    {"solar-open", tok::PreType::Qwen2, false, false, false},
    {"megrez", tok::PreType::Qwen2, false, false, true},
    {"stablelm2", tok::PreType::Qwen2, false, false, true},
}};

std::string supported_pre_list() {
  std::string s;
  for (const auto& p : kPreTokenizers) {
    if (!s.empty()) s += ", ";
    s += p.name;
  }
  return s;
}

// Texts llama.cpp treats as end of generation (and forces to control type) when present.
constexpr std::array<std::string_view, 22> kEogTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "[e~["};
constexpr std::array<std::string_view, 11> kEotTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
    "<end_of_utterance>"};
constexpr std::array<std::string_view, 5> kFimPadTexts = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>",
                                                          "<PAD>", "[PAD]"};
constexpr std::array<std::string_view, 5> kFimRepTexts = {"<|fim_repo|>", "<|repo_name|>",
                                                          "<fim-repo>", "<REPO>", "<reponame>"};
constexpr std::array<std::string_view, 1> kFimSepTexts = {"<|file_sep|>"};

bool one_of(std::string_view s, std::span<const std::string_view> list) {
  // Every listed text starts with '<', '[', '_' or U+2581 (0xE2 ...): a cheap filter for the
  // 100k+ ordinary tokens these lists are checked against.
  if (s.empty() || (s[0] != '<' && s[0] != '[' && s[0] != '_' && s[0] != '\xE2')) return false;
  return std::find(list.begin(), list.end(), s) != list.end();
}

constexpr std::array<std::string_view, 1> kEomTexts = {"<|eom_id|>"};
constexpr std::array<std::string_view, 8> kFimPreTexts = {
      "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>",
      "<PRE>", "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>"};
constexpr std::array<std::string_view, 8> kFimSufTexts = {
      "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>",
      "<SUF>", "\xE2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>"};
constexpr std::array<std::string_view, 8> kFimMidTexts = {
      "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>",
      "<MID>", "\xE2\x96\x81<MID>", "<|code_middle|>", "<|middle|>"};

// The candidate texts of the special-token slots detect_special_tokens() fills by text, in the
// order of Impl::pick_slots(): eot, eom, fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep.
const std::array<std::span<const std::string_view>, 8> kPickTexts = {
    kEotTexts, kEomTexts, kFimPreTexts, kFimSufTexts, kFimMidTexts, kFimPadTexts, kFimRepTexts, kFimSepTexts};

// Whether a text is among any slot's candidates.
bool is_pick_candidate(std::string_view text) {
  for (auto list : kPickTexts)
    if (one_of(text, list)) return true;
  return false;
}

// The ids of the tokens whose text is_pick_candidate(), in the order llama.cpp's text -> id map
// (std::unordered_map<std::string, llama_token>, filled in id order) iterates them. Keys are
// views of the texts: equal bytes hash equally, so the order is that of std::string keys,
// without copying 128k strings. Returns early, with nothing, once `stop` is set.
std::vector<int32_t> pick_candidates_in_map_order(const GGUFValue& texts, const std::atomic<bool>& stop) {
  const size_t n = texts.array_size();
  std::deque<std::string> renamed;  // llama.cpp's names for empty texts (see load_vocab)
  // No reserve(): with the same insertion sequence the map iterates in the same order.
  std::unordered_map<std::string_view, int32_t, tok::StringHash, std::equal_to<>> map;
  for (size_t i = 0; i < n; ++i) {
    if (i % 4096 == 0 && stop) return {};
    std::string_view t = texts.str_at(i);
    if (t.empty()) t = renamed.emplace_back(fmt::format("[EMPTY_{}]", i));
    map.emplace(t, static_cast<int32_t>(i));
  }
  std::vector<int32_t> in_order;
  for (const auto& [text, id] : map)
    if (is_pick_candidate(text)) in_order.push_back(id);
  return in_order;
}

}  // namespace

struct Tokenizer::Impl {
  std::string path;
  std::string model;
  std::string pre;
  Kind kind = Kind::Spm;
  tok::Vocab vocab;
  std::unique_ptr<tok::BpeModel> bpe;
  std::unique_ptr<tok::UgmModel> ugm;
  tok::WpmOptions wpm;

  bool add_space_prefix = false;
  bool add_bos = false;
  bool add_eos = false;
  bool add_sep = false;
  bool clean_spaces = false;

  int32_t bos = -1, eos = -1, eot = -1, eom = -1, unk = -1, sep = -1, pad = -1, mask = -1;
  int32_t fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;

  std::vector<int32_t> eog;            // ascending
  std::vector<int32_t> special_cache;  // control / user-defined / unknown, longest text first

  void load(const GGUFFile& f);
  void load_vocab(const GGUFFile& f);
  void load_special_ids(const GGUFFile& f);
  // Whether detect_special_tokens() needs llama.cpp's map order (Vocab::ordered_map): some
  // slot it fills has several candidate texts in this vocabulary.
  bool special_picks_need_map_order();
  // The slots whose candidates kPickTexts lists, in its order.
  std::array<int32_t*, 8> pick_slots() { return {&eot, &eom, &fim_pre, &fim_suf, &fim_mid, &fim_pad, &fim_rep, &fim_sep}; }
  void detect_special_tokens(const std::vector<int32_t>* candidates_in_map_order);
  std::string render_piece(int32_t id) const;
  void check_id(int32_t id) const {
    if (id < 0 || id >= vocab.n())
      fail("tokenizer: {}: token id {} out of range (n_vocab {})", path, id, vocab.n());
  }

  struct Fragment {
    int32_t token;  // >= 0: a special token; -1: raw text [off, off + len)
    size_t off;
    size_t len;
  };
  std::vector<Fragment> partition(std::string_view text, bool parse_special) const;
};

void Tokenizer::Impl::load(const GGUFFile& f) {
  path = f.path();
  model = f.get_string("tokenizer.ggml.model");
  pre = f.opt_string("tokenizer.ggml.pre").value_or("");

  const PreInfo* pre_info = nullptr;
  if (model == "llama") {
    kind = Kind::Spm;
    bos = 1, eos = 2, unk = 0;
    add_space_prefix = true;
    add_bos = true;
  } else if (model == "bert") {
    kind = Kind::Wpm;
    bos = 101, unk = 100, sep = 102, pad = 0, mask = 103;
    add_bos = true;
    add_sep = true;
    clean_spaces = true;
  } else if (model == "gpt2") {
    kind = Kind::Bpe;
    bos = 11, eos = 11;  // llama.cpp's (odd) defaults for BPE vocabularies
    clean_spaces = true;
    if (pre.empty()) {
      fail("tokenizer: {}: tokenizer.ggml.pre is missing; llama.cpp would fall back to a degraded "
           "'default' pre-tokenizer, which slm does not guess at (supported: {})",
           path, supported_pre_list());
    }
    for (const auto& p : kPreTokenizers) {
      if (p.name == pre) pre_info = &p;
    }
    if (!pre_info) {
      fail("tokenizer: {}: unsupported tokenizer.ggml.pre '{}' for a gpt2 (byte-level BPE) "
           "vocabulary (supported: {})", path, pre, supported_pre_list());
    }
    add_bos = pre_info->add_bos;
    clean_spaces = pre_info->clean_spaces;
  } else if (model == "t5") {
    // SentencePiece unigram. llama.cpp's defaults are T5's (no BOS, EOS appended); converters
    // of decoder models write add_bos_token / add_eos_token, which override them below.
    kind = Kind::Ugm;
    eos = 1, unk = 2, pad = 0;
    add_eos = true;
  } else {
    fail("tokenizer: {}: unsupported tokenizer.ggml.model '{}' (supported: llama, gpt2, bert, t5)",
         path, model);
  }
  if (auto v = f.opt_bool("tokenizer.ggml.add_space_prefix")) add_space_prefix = *v;

  // detect_special_tokens() needs llama.cpp's map order where the vocabulary holds several
  // candidate texts for one special-token slot (Llama 3 does). Building that map costs ~80 ms
  // for 128k tokens, so a second thread starts on it at once, from the file's token texts,
  // while this one reads the vocabulary and the merges; it is stopped if not needed after all.
  std::atomic<bool> stop{false};
  std::future<std::vector<int32_t>> candidates;
  const GGUFValue* texts = f.find("tokenizer.ggml.tokens");
  if (texts && texts->is_array() && texts->elem_type == GGUFType::STRING)
    candidates = std::async(std::launch::async, [texts, &stop] { return pick_candidates_in_map_order(*texts, stop); });
  struct StopOnExit {
    std::atomic<bool>& stop;
    ~StopOnExit() { stop = true; }  // before `candidates` waits for the thread, on any exit
  } stop_on_exit{stop};

  load_vocab(f);
  load_special_ids(f);
  vocab.unk_id = unk;
  if (!special_picks_need_map_order()) stop = true;

  if (kind == Kind::Bpe) {
    const GGUFValue* m = f.find("tokenizer.ggml.merges");
    if (!m) fail("tokenizer: {}: gpt2 vocabulary without tokenizer.ggml.merges", path);
    if (!m->is_array() || m->elem_type != GGUFType::STRING)
      fail("tokenizer: {}: tokenizer.ggml.merges must be an array of strings", path);
    bpe = std::make_unique<tok::BpeModel>(vocab, pre_info->type, pre_info->ignore_merges, m->array_size(),
                                          [m](size_t i) { return m->str_at(i); });
  }
  if (kind == Kind::Ugm) {
    tok::UgmOptions o;
    o.add_space_prefix = add_space_prefix;
    o.remove_extra_whitespaces = f.opt_bool("tokenizer.ggml.remove_extra_whitespaces").value_or(false);
    std::string_view charsmap;
    if (const GGUFValue* c = f.find("tokenizer.ggml.precompiled_charsmap")) {
      if (!c->is_array() || (c->elem_type != GGUFType::UINT8 && c->elem_type != GGUFType::INT8))
        fail("tokenizer: {}: tokenizer.ggml.precompiled_charsmap must be an array of bytes", path);
      charsmap = std::string_view(reinterpret_cast<const char*>(c->raw.data()), c->raw.size());
    }
    ugm = std::make_unique<tok::UgmModel>(vocab, charsmap, o, path);
  }

  if (auto v = f.opt_bool("tokenizer.ggml.add_bos_token")) add_bos = *v;
  if (auto v = f.opt_bool("tokenizer.ggml.add_eos_token")) add_eos = *v;
  if (auto v = f.opt_bool("tokenizer.ggml.add_sep_token")) add_sep = *v;
  if (add_bos && bos < 0)
    fail("tokenizer: {}: tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set", path);
  if (add_eos && eos < 0)
    fail("tokenizer: {}: tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set", path);
  if (add_sep && sep < 0)
    fail("tokenizer: {}: tokenizer.ggml.add_sep_token is true, but tokenizer.ggml.seperator_token_id is not set", path);

  if (auto v = f.opt_bool("tokenizer.ggml.normalizer.lowercase")) wpm.lowercase = *v;
  wpm.strip_accents = wpm.lowercase;
  if (auto v = f.opt_bool("tokenizer.ggml.normalizer.strip_accents")) wpm.strip_accents = *v;

  if (!stop) {
    const std::vector<int32_t> in_order = candidates.get();
    detect_special_tokens(&in_order);
  } else {
    detect_special_tokens(nullptr);
  }

  // Special tokens to split off before tokenizing, longest first so that a token whose text
  // contains another's wins. (llama.cpp's sort is unstable; ties are ordered by id here.)
  for (int32_t id = 0; id < vocab.n(); ++id) {
    if (vocab.tokens[id].attr & (kAttrControl | kAttrUserDefined | kAttrUnknown))
      special_cache.push_back(id);
  }
  std::stable_sort(special_cache.begin(), special_cache.end(), [&](int32_t a, int32_t b) {
    return vocab.tokens[a].text.size() > vocab.tokens[b].text.size();
  });


  // Per-model attributes llama.cpp sets by name: Phi-3's special tokens swallow the whitespace
  // after them when they are split off the text.
  std::string name = f.opt_string("general.name").value_or("");
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    for (int32_t id : special_cache) vocab.tokens[id].attr |= kAttrRstrip;
    if (int32_t id = vocab.find("</s>"); id >= 0) vocab.tokens[id].attr |= kAttrRstrip;
    for (std::string_view t : {"<unk>", "<s>", "<|endoftext|>"}) {
      if (int32_t id = vocab.find(t); id >= 0) vocab.tokens[id].attr &= ~kAttrRstrip;
    }
  }
}

void Tokenizer::Impl::load_vocab(const GGUFFile& f) {
  const GGUFValue& toks = f.get("tokenizer.ggml.tokens");
  if (!toks.is_array() || toks.elem_type != GGUFType::STRING)
    fail("tokenizer: {}: tokenizer.ggml.tokens must be an array of strings", path);
  const size_t n = toks.array_size();
  if (n == 0) fail("tokenizer: {}: tokenizer.ggml.tokens is empty", path);
  if (n > static_cast<size_t>(INT32_MAX))
    fail("tokenizer: {}: {} tokens do not fit in int32 ids", path, n);

  std::vector<float> scores;
  if (const GGUFValue* s = f.find("tokenizer.ggml.scores")) {
    if (!s->is_array() || (s->elem_type != GGUFType::FLOAT32 && s->elem_type != GGUFType::INT32))
      fail("tokenizer: {}: tokenizer.ggml.scores must be an array of float32 or int32", path);
    scores = s->as_floats();
    if (scores.size() < n)
      fail("tokenizer: {}: tokenizer.ggml.scores has {} entries for {} tokens", path, scores.size(), n);
  }
  std::vector<int64_t> types;
  if (const GGUFValue* t = f.find("tokenizer.ggml.token_type")) {
    if (!t->is_array() || t->elem_type != GGUFType::INT32)
      fail("tokenizer: {}: tokenizer.ggml.token_type must be an array of int32", path);
    types = t->as_ints();
    if (types.size() < n)
      fail("tokenizer: {}: tokenizer.ggml.token_type has {} entries for {} tokens", path, types.size(), n);
  }

  vocab.tokens.resize(n);
  for (size_t i = 0; i < n; ++i) {
    std::string word(toks.str_at(i));
    if (word.empty()) word = fmt::format("[EMPTY_{}]", i);  // as llama.cpp, keeps ids unique
    vocab.max_token_len = std::max(vocab.max_token_len, word.size());
    tok::TokenData& td = vocab.tokens[i];
    td.text = std::move(word);
    td.score = scores.empty() ? 0.0f : scores[i];
    td.attr = kAttrNormal;
    if (!types.empty()) {
      // GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
      switch (types[i]) {
        case 1: td.attr = kAttrNormal; break;
        case 2: td.attr = kAttrUnknown; break;
        case 3: td.attr = kAttrControl; break;
        case 4: td.attr = kAttrUserDefined; break;
        case 5: td.attr = kAttrUnused; break;
        case 6: td.attr = kAttrByte; break;
        default: td.attr = tok::kAttrUndefined; break;
      }
    }
  }
  int32_t first = -1;
  if (const int32_t dup = vocab.build_index(&first); dup >= 0)
    fail("tokenizer: {}: duplicate token in vocabulary: '{}' has ids {} and {}", path,
         vocab.tokens[dup].text, first, dup);
}

void Tokenizer::Impl::load_special_ids(const GGUFFile& f) {
  const std::pair<const char*, int32_t*> keys[] = {
      {"tokenizer.ggml.bos_token_id", &bos},         {"tokenizer.ggml.eos_token_id", &eos},
      {"tokenizer.ggml.eot_token_id", &eot},         {"tokenizer.ggml.eom_token_id", &eom},
      {"tokenizer.ggml.unknown_token_id", &unk},     {"tokenizer.ggml.seperator_token_id", &sep},
      {"tokenizer.ggml.padding_token_id", &pad},     {"tokenizer.ggml.mask_token_id", &mask},
      {"tokenizer.ggml.fim_pre_token_id", &fim_pre}, {"tokenizer.ggml.fim_suf_token_id", &fim_suf},
      {"tokenizer.ggml.fim_mid_token_id", &fim_mid}, {"tokenizer.ggml.fim_pad_token_id", &fim_pad},
      {"tokenizer.ggml.fim_rep_token_id", &fim_rep}, {"tokenizer.ggml.fim_sep_token_id", &fim_sep},
      // deprecated spellings, read after (and so overriding) the fim_* ones, as llama.cpp does
      {"tokenizer.ggml.prefix_token_id", &fim_pre},  {"tokenizer.ggml.suffix_token_id", &fim_suf},
      {"tokenizer.ggml.middle_token_id", &fim_mid},
  };
  for (const auto& [key, id] : keys) {
    if (*id >= vocab.n()) *id = -1;  // a default that this vocabulary does not have
    const GGUFValue* v = f.find(key);
    if (!v || v->is_array()) continue;
    // Converters write "none" as 0xFFFFFFFF (or -1); llama.cpp then keeps the default.
    int64_t x = -1;
    if (auto* u = std::get_if<uint64_t>(&v->scalar)) x = *u > static_cast<uint64_t>(INT32_MAX) ? -1 : static_cast<int64_t>(*u);
    else if (auto* i = std::get_if<int64_t>(&v->scalar)) x = *i;
    else fail("tokenizer: {}: {} must be an integer, found {}", path, key, gguf_type_name(v->type));
    if (x >= 0 && x < vocab.n()) *id = static_cast<int32_t>(x);
  }
}


bool Tokenizer::Impl::special_picks_need_map_order() {
  const auto slots = pick_slots();
  for (size_t i = 0; i < slots.size(); ++i) {
    int found = 0;
    for (std::string_view t : kPickTexts[i]) found += vocab.find(t) >= 0;
    if (*slots[i] < 0 && found > 1) return true;
  }
  return false;
}

// llama.cpp's text-based heuristics: find EOT/EOM/FIM tokens the metadata did not name, mark
// control tokens called "unused..." as unused, and collect the end-of-generation set. Tokens
// found this way are forced to control type. llama.cpp makes each pick while walking its
// text -> id map, so where a vocabulary holds several of a slot's candidate texts, the first in
// that map's order wins: `ordered` lists the candidates (is_pick_candidate) in that map's order
// when special_picks_need_map_order(), else it is null and they are looked up directly.
void Tokenizer::Impl::detect_special_tokens(const std::vector<int32_t>* ordered) {
  auto& toks = vocab.tokens;
  std::vector<int32_t> set;
  const auto slots = pick_slots();
  auto choose = [&](size_t i, int32_t id) {
    *slots[i] = id;
    toks[id].attr |= kAttrControl;
  };
  if (ordered) {
    for (const int32_t id : *ordered)
      for (size_t i = 0; i < slots.size(); ++i)
        if (*slots[i] < 0 && one_of(toks[id].text, kPickTexts[i])) choose(i, id);
  } else {
    for (size_t i = 0; i < slots.size(); ++i)
      for (std::string_view t : kPickTexts[i])
        if (const int32_t id = vocab.find(t); *slots[i] < 0 && id >= 0) choose(i, id);
  }
  // Then, as llama.cpp's later loops: control tokens named "unused..." are unused, and the
  // end-of-generation texts become control tokens (after that check, as there).
  for (tok::TokenData& td : toks)
    if ((td.attr & kAttrControl) && td.text.find("unused") != std::string::npos) td.attr |= kAttrUnused;
  std::vector<int32_t> eog_found;
  for (std::string_view t : kEogTexts) {
    if (const int32_t id = vocab.find(t); id >= 0) {
      eog_found.push_back(id);
      toks[id].attr |= kAttrControl;
    }
  }
  for (int32_t id : {fim_pad, fim_rep, fim_sep}) {
    if (id >= 0) set.push_back(id);
  }
  set.insert(set.end(), eog_found.begin(), eog_found.end());
  // gpt-oss: these structural tokens always render.
  for (std::string_view t : {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}) {
    if (int32_t id = vocab.find(t); id >= 0) toks[id].attr = kAttrUserDefined;
  }
  for (int32_t id : {eos, eot, eom}) {
    if (id >= 0) set.push_back(id);
  }
  std::sort(set.begin(), set.end());
  set.erase(std::unique(set.begin(), set.end()), set.end());

  auto has = [&](std::string_view t) {
    return std::any_of(set.begin(), set.end(), [&](int32_t id) { return toks[id].text == t; });
  };
  auto remove = [&](std::string_view t, uint32_t new_attr) {
    for (size_t i = 0; i < set.size(); ++i) {
      if (toks[set[i]].text == t) {
        toks[set[i]].attr = new_attr;
        set.erase(set.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
    }
  };
  // o200k_harmony / solar-open: there <|end|> ends a message, not the generation.
  const bool has_call = has("<|call|>") || has("<|calls|>");
  if (has("<|end|>") && has_call && (has("<|return|>") || has("<|flush|>")))
    remove("<|end|>", kAttrUserDefined);
  // gemma4 / paddleocr: </s> is not an end of generation next to <|tool_response>.
  if (has("<|tool_response>") && has("</s>")) remove("</s>", kAttrNormal);
  eog = std::move(set);
}

std::string Tokenizer::Impl::render_piece(int32_t id) const {
  const tok::TokenData& td = vocab.tokens[id];
  const uint32_t attr = td.attr;
  const std::string& text = td.text;
  if (attr & (kAttrUnknown | kAttrControl | kAttrUserDefined)) return text;
  if (attr & kAttrNormal) {
    if (kind == Kind::Bpe) {
      // Undo the byte-level alphabet. A character outside it is shown the way llama.cpp
      // shows it, so that the text stays comparable.
      std::string out;
      for (uint32_t c : unicode::decode_utf8(text)) {
        const int b = unicode::bpe_to_byte(c);
        if (b >= 0) {
          out.push_back(static_cast<char>(b));
        } else {
          out += "[UNK_BYTE_0x";
          for (char ch : unicode::to_utf8(c)) out += fmt::format("{:02x}", static_cast<uint8_t>(ch));
          out += text + "]";
        }
      }
      return out;
    }
    std::string out;
    for (size_t i = 0; i < text.size();) {
      if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
        out.push_back(' ');
        i += 3;
      } else {
        out.push_back(text[i++]);
      }
    }
    return out;
  }
  if (attr & kAttrByte) {
    // "<0xXX>": the hex digits at offset 3 (strtol semantics: stop at the first non-digit).
    unsigned v = 0;
    for (size_t i = 3; i < 5 && i < text.size() && std::isxdigit(static_cast<unsigned char>(text[i])); ++i)
      v = v * 16 + static_cast<unsigned>(std::isdigit(static_cast<unsigned char>(text[i]))
                                             ? text[i] - '0'
                                             : std::tolower(static_cast<unsigned char>(text[i])) - 'a' + 10);
    return std::string(1, static_cast<char>(v));
  }
  return {};  // unused / undefined tokens render as nothing
}

// Splits text around the special tokens it contains (llama.cpp's tokenizer_st_partition).
// User-defined tokens are always split off; control and unknown tokens only when
// parse_special. A token with LSTRIP/RSTRIP also removes the whitespace before/after it.
std::vector<Tokenizer::Impl::Fragment> Tokenizer::Impl::partition(std::string_view text,
                                                                  bool parse_special) const {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({-1, 0, text.size()});
  std::vector<Fragment> next;
  auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  for (int32_t id : special_cache) {
    const tok::TokenData& td = vocab.tokens[id];
    if (!parse_special && (td.attr & (kAttrControl | kAttrUnknown))) continue;
    const std::string& t = td.text;
    bool any = false;
    for (const Fragment& fr : frags) {
      if (fr.token < 0 && text.substr(fr.off, fr.len).find(t) != std::string_view::npos) {
        any = true;
        break;
      }
    }
    if (!any) continue;
    next.clear();
    for (const Fragment& fr : frags) {
      if (fr.token >= 0) {
        next.push_back(fr);
        continue;
      }
      size_t off = fr.off, len = fr.len;
      while (len > 0) {
        const size_t rel = text.substr(off, len).find(t);
        if (rel == std::string_view::npos) {
          next.push_back({-1, off, len});
          break;
        }
        size_t left = rel;
        if (td.attr & kAttrLstrip) {
          while (left > 0 && is_space(text[off + left - 1])) --left;
        }
        if (left > 0) next.push_back({-1, off, left});
        next.push_back({id, 0, 0});
        size_t r_off = off + rel + t.size();
        size_t r_len = off + len - r_off;
        if (td.attr & kAttrRstrip) {
          while (r_len > 0 && is_space(text[r_off])) ++r_off, --r_len;
        }
        off = r_off;
        len = r_len;
      }
    }
    frags.swap(next);
  }
  return frags;
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GGUFFile& f) {
  auto impl = std::make_unique<Impl>();
  impl->load(f);
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

int32_t Tokenizer::n_vocab() const { return impl_->vocab.n(); }

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  const Impl& m = *impl_;
  std::vector<int32_t> out;
  const auto frags = m.partition(text, parse_special);
  switch (m.kind) {
    case Kind::Spm: {
      if (add_special && m.add_bos) out.push_back(m.bos);
      // SentencePiece adds its dummy prefix to the start of the text and, as llama.cpp does,
      // to text that follows a special token.
      bool prev_special = true;
      std::string buf;
      for (const auto& fr : frags) {
        if (fr.token >= 0) {
          out.push_back(fr.token);
          prev_special = true;
          continue;
        }
        buf.clear();
        if (m.add_space_prefix && prev_special) buf += "\xE2\x96\x81";
        for (char c : text.substr(fr.off, fr.len)) {
          if (c == ' ') buf += "\xE2\x96\x81";
          else buf.push_back(c);
        }
        tok::spm_tokenize(m.vocab, buf, out);
        prev_special = false;
      }
      if (add_special && m.add_eos) out.push_back(m.eos);
      break;
    }
    case Kind::Bpe:
    case Kind::Ugm: {
      if (add_special && m.add_bos) out.push_back(m.bos);
      for (const auto& fr : frags) {
        if (fr.token >= 0) out.push_back(fr.token);
        else if (m.kind == Kind::Bpe) m.bpe->tokenize(text.substr(fr.off, fr.len), out);
        else m.ugm->tokenize(text.substr(fr.off, fr.len), out);
      }
      if (add_special && m.add_eos) out.push_back(m.eos);
      break;
    }
    case Kind::Wpm: {
      // BERT always frames the input as [CLS] ... [SEP], whatever add_bos says.
      if (add_special) {
        if (m.bos < 0) fail("tokenizer: {}: add_special needs a [CLS]/BOS token", m.path);
        out.push_back(m.bos);
      }
      for (const auto& fr : frags) {
        if (fr.token >= 0) out.push_back(fr.token);
        else tok::wpm_tokenize(m.vocab, m.wpm, text.substr(fr.off, fr.len), out);
      }
      if (add_special) {
        if (m.sep < 0) fail("tokenizer: {}: add_special needs a [SEP] token", m.path);
        out.push_back(m.sep);
      }
      break;
    }
  }
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  impl_->check_id(id);
  if (!render_special && (impl_->vocab.tokens[id].attr & (kAttrUnknown | kAttrControl))) return {};
  // Rendered on demand (a few hundred ns): caching all 128k pieces cost 25 ms of start-up.
  return impl_->render_piece(id);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool render_special) const {
  const Impl& m = *impl_;
  std::string text;
  bool remove_space = m.add_space_prefix;
  for (int32_t id : ids) {
    std::string piece = token_to_piece(id, render_special);
    if (remove_space && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    remove_space = false;  // only ever the first token, even when it renders as nothing
    text += piece;
  }
  if (!m.clean_spaces || text.empty()) return text;

  // Hugging Face's clean_up_tokenization_spaces, as llama.cpp does it: three in-place passes.
  std::string& s = text;
  // 1: " ?", " !", " .", " ," lose the space.
  size_t total1 = s.size(), total = 1;
  for (size_t i = 1; i < total1; ++i) {
    const char x = s[i];
    if (s[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) --total;
    s[total++] = x;
  }
  s.resize(total);
  // 2: a lone apostrophe between spaces loses both spaces.
  const size_t total2 = s.size();
  total = 1;
  for (size_t i = 1; i < total2; ++i) {
    const char x = s[i];
    if (x == '\'' && i + 1 < total2 && s[i - 1] == ' ' && s[i + 1] == ' ') {
      --total;
      s[++i] = '\0';
    }
    s[total++] = x;
  }
  s.resize(total);
  // 3: " 's", " 'm", " 're", " 've" lose the space.
  const size_t total3 = s.size();
  total = 1;
  for (size_t i = 1; i < total3; ++i) {
    const char x = s[i];
    if (s[i - 1] == ' ' && x == '\'' && i + 1 < total3) {
      const char x1 = s[i + 1];
      if (x1 == 's' || x1 == 'm') {
        --total;
      } else if (i + 2 < total3) {
        const char x2 = s[i + 2];
        if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) --total;
      }
    }
    s[total++] = x;
  }
  s.resize(total);
  return text;
}

int32_t Tokenizer::bos() const { return impl_->bos; }
int32_t Tokenizer::eos() const { return impl_->eos; }
int32_t Tokenizer::eot() const { return impl_->eot; }
int32_t Tokenizer::eom() const { return impl_->eom; }
int32_t Tokenizer::unk() const { return impl_->unk; }
int32_t Tokenizer::sep() const { return impl_->sep; }
int32_t Tokenizer::pad() const { return impl_->pad; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::add_eos() const { return impl_->add_eos; }
int32_t Tokenizer::fim_pre() const { return impl_->fim_pre; }
int32_t Tokenizer::fim_suf() const { return impl_->fim_suf; }
int32_t Tokenizer::fim_mid() const { return impl_->fim_mid; }
int32_t Tokenizer::fim_pad() const { return impl_->fim_pad; }
int32_t Tokenizer::fim_rep() const { return impl_->fim_rep; }
int32_t Tokenizer::fim_sep() const { return impl_->fim_sep; }

bool Tokenizer::is_eog(int32_t id) const {
  return std::binary_search(impl_->eog.begin(), impl_->eog.end(), id);
}
const std::vector<int32_t>& Tokenizer::eog_ids() const { return impl_->eog; }

bool Tokenizer::is_control(int32_t id) const {
  if (id < 0 || id >= impl_->vocab.n()) return false;
  return (impl_->vocab.tokens[id].attr & kAttrControl) != 0;
}

const std::string& Tokenizer::token_text(int32_t id) const {
  impl_->check_id(id);
  return impl_->vocab.tokens[id].text;
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  const int32_t id = impl_->vocab.find(text);
  if (id < 0) return std::nullopt;
  return id;
}

const std::string& Tokenizer::model_type() const { return impl_->model; }
const std::string& Tokenizer::pre_type() const { return impl_->pre; }

std::string StreamDecoder::push(int32_t id) {
  pending_ += tok_->token_to_piece(id, render_special_);
  const size_t keep = unicode::incomplete_utf8_tail(pending_);
  std::string out = pending_.substr(0, pending_.size() - keep);
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace slm
