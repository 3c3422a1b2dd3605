// What constrained output costs per sampled token: the whole-vocabulary mask (the fallback
// when the model's own choice breaks the grammar) and the one-token check (the common case),
// on the real tokenizers in shared/fixtures/vocab with a JSON schema's grammar, in three kinds
// of state: between JSON tokens (few tokens fit), inside a string (nearly all fit) and inside
// a number.
//   ./slm_benches --benchmark_filter=Grammar
// Needs SLM_SHARED (default ../shared next to the source tree).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/gguf.h"
#include "runtime/grammar_vocab.h"
#include "sampling/grammar.h"
#include "sampling/json_schema.h"
#include "sampling/sampler.h"
#include "tokenizer/tokenizer.h"

namespace {

std::filesystem::path shared_dir() {
  if (const char* s = std::getenv("SLM_SHARED")) return s;
  return std::filesystem::path(SLM_BENCH_SOURCE_DIR) / ".." / "shared";
}

const char* kVocabs[] = {"ggml-vocab-llama-bpe.gguf", "ggml-vocab-qwen2.gguf", "ggml-vocab-llama-spm.gguf"};
const char* kStates[] = {"{\"name\": \"x\", ", "{\"name\": \"Jo", "{\"name\": \"x\", \"age\": 4"};
const char* kStateNames[] = {"between", "in_string", "in_number"};

std::shared_ptr<const slm::GrammarVocab> vocab(int i) {
  static std::map<int, std::shared_ptr<const slm::GrammarVocab>> cache;
  auto& v = cache[i];
  if (!v) {
    auto f = slm::GGUFFile::open((shared_dir() / "fixtures" / "vocab" / kVocabs[i]).string());
    auto tok = slm::Tokenizer::from_gguf(*f);
    v = slm::make_grammar_vocab(*tok);
  }
  return v;
}

// The vocabulary, or null with the benchmark marked skipped (no shared fixtures).
std::shared_ptr<const slm::GrammarVocab> vocab_or_skip(benchmark::State& st, int i) {
  try {
    return vocab(i);
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return nullptr;
  }
}

std::shared_ptr<const slm::Grammar> person_grammar() {
  static auto g = slm::Grammar::parse(slm::json_schema_to_grammar(nlohmann::ordered_json::parse(R"({
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                   "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["name", "age"]})")));
  return g;
}

void GrammarMask(benchmark::State& st) {
  const int vi = static_cast<int>(st.range(0)), si = static_cast<int>(st.range(1));
  const auto v = vocab_or_skip(st, vi);
  if (!v) return;
  slm::GrammarState s(person_grammar());
  if (!s.advance(kStates[si])) {
    st.SkipWithError("state text refused");
    return;
  }
  std::vector<uint8_t> allowed;
  size_t n_allowed = 0;
  for (auto _ : st) {
    v->allowed(s, allowed);
    benchmark::DoNotOptimize(allowed.data());
  }
  for (uint8_t a : allowed) n_allowed += a;
  st.SetLabel(std::string(kVocabs[vi]) + " " + kStateNames[si] + ": " + std::to_string(n_allowed) + " of " +
              std::to_string(v->n_vocab()) + " allowed");
}
BENCHMARK(GrammarMask)->ArgsProduct({{0, 1, 2}, {0, 1, 2}})->Unit(benchmark::kMillisecond);

// The check sample() makes first: does the grammar take the model's own choice?
void GrammarAllowsOneToken(benchmark::State& st) {
  const auto v = vocab_or_skip(st, 0);
  if (!v) return;
  slm::GrammarState s(person_grammar());
  s.advance(kStates[1]);
  int32_t id = 0;
  for (auto _ : st) {
    benchmark::DoNotOptimize(v->allows(s, id));
    id = (id + 7919) % v->n_vocab();
  }
}
BENCHMARK(GrammarAllowsOneToken)->Unit(benchmark::kMicrosecond);

// A sample() whose first choice the grammar refuses, in a state the sampler has met before:
// the kept mask (Sampler::grammar_mask) instead of the vocabulary walk of GrammarMask, then
// the masked draw. Greedy on logits whose argmax is a newline, refused in both states.
void GrammarSampleRefusedKeptMask(benchmark::State& st) {
  const int vi = static_cast<int>(st.range(0)), si = static_cast<int>(st.range(1));
  const auto v = vocab_or_skip(st, vi);
  if (!v) return;
  slm::SamplerParams sp;
  sp.temperature = 0;
  slm::Sampler sampler(sp, v->n_vocab());
  sampler.set_grammar({person_grammar(), v});
  std::vector<float> logits(static_cast<size_t>(v->n_vocab()));
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f;
  int32_t newline = -1;
  for (int32_t i = 0; i < v->n_vocab() && newline < 0; ++i)
    if (v->piece(i) == "\n") newline = i;
  if (newline < 0) {
    st.SkipWithError("no newline token");
    return;
  }
  logits[static_cast<size_t>(newline)] = 10.0f;
  slm::GrammarState s(person_grammar());
  if (!s.advance(kStates[si]) || v->allows(s, newline)) {
    st.SkipWithError("state text refused, or a newline allowed there");
    return;
  }
  // The sampler's state: the state text fed as one-byte tokens.
  std::map<char, int32_t> byte_token;
  for (int32_t i = 0; i < v->n_vocab(); ++i)
    if (v->piece(i).size() == 1 && !byte_token.count(v->piece(i)[0])) byte_token[v->piece(i)[0]] = i;
  for (const char c : std::string(kStates[si])) {
    if (!byte_token.count(c)) {
      st.SkipWithError("no one-byte token for a character of the state");
      return;
    }
    sampler.accept_sampled(byte_token[c]);
  }
  for (auto _ : st) benchmark::DoNotOptimize(sampler.sample(logits.data()));
  st.SetLabel(std::string(kVocabs[vi]) + " " + kStateNames[si] + ": " + std::to_string(sampler.grammar_mask_reuses()) +
              " of " + std::to_string(sampler.grammar_redraws()) + " masks kept");
}
BENCHMARK(GrammarSampleRefusedKeptMask)->ArgsProduct({{0, 1, 2}, {0, 1}})->Unit(benchmark::kMillisecond);

}  // namespace
