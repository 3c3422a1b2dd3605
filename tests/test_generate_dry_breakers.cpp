// DRY's sequence breakers (SamplerParams::dry_sequence_breakers) resolved against a real
// vocabulary by resolve_dry_breakers (runtime/generate.h); the sampling stage itself is tested
// in test_sampling_stages.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/gguf.h"
#include "models/model.h"
#include "runtime/generate.h"
#include "sampling/sampler.h"
#include "support/fixtures.h"
#include "tokenizer/tokenizer.h"

namespace {

using slm::SamplerParams;

// DRY's breakers resolved against a real vocabulary (stories260K): exactly the tokens whose
// text holds a newline, a colon, a quote or an asterisk, the newline and colon tokens among
// them; none looked for while DRY is off.
TEST(SamplingStages, DryBreakersAreTheTokensContainingThem) {
  SLM_REQUIRE_FIXTURE(model_path, "models/stories260K.gguf");
  auto model = slm::Model::load(model_path.string());
  auto tok = slm::Tokenizer::from_gguf(model->gguf());
  SamplerParams p;
  slm::resolve_dry_breakers(p, *tok);
  EXPECT_TRUE(p.dry_breakers_resolved);
  EXPECT_TRUE(p.dry_breaker_ids.empty());
  p.dry_multiplier = 0.8f;
  slm::resolve_dry_breakers(p, *tok);
  ASSERT_TRUE(std::is_sorted(p.dry_breaker_ids.begin(), p.dry_breaker_ids.end()));
  int found = 0;
  for (int32_t id = 0; id < tok->n_vocab(); ++id) {
    const std::string piece = tok->token_to_piece(id);
    const bool breaks = piece.find_first_of("\n:\"*") != std::string::npos;
    EXPECT_EQ(breaks, std::binary_search(p.dry_breaker_ids.begin(), p.dry_breaker_ids.end(), id)) << id << " " << piece;
    found += breaks;
  }
  EXPECT_GT(found, 2);
  for (const char* text : {"\n", ":"}) {
    const std::vector<int32_t> ids = tok->encode(text, false, false);
    ASSERT_FALSE(ids.empty()) << text;
    EXPECT_TRUE(std::binary_search(p.dry_breaker_ids.begin(), p.dry_breaker_ids.end(), ids.back())) << text;
  }
}

// A breaker no one token holds (llama.cpp's restart sequences), on Llama 3's vocabulary:
// "Once upon a time" is four tokens there, and resolves to the first of them followed by the
// other three (the breaker's own tokens), among the other tokens whose text ends with its start
// ("O", "On", ... each followed by the tokens of the rest). Every sequence found spells the
// breaker from some point of its head's text on; no token holds all of it, so there are no
// single breaker ids; and a breaker longer than 40 bytes is cut there.
TEST(SamplingStages, DryBreakersSpelledOverSeveralTokensBecomeSequences) {
  SLM_REQUIRE_FIXTURE(vocab_path, "fixtures/vocab/ggml-vocab-llama-bpe.gguf");
  auto file = slm::GGUFFile::open(vocab_path.string());
  auto tok = slm::Tokenizer::from_gguf(*file);
  const std::string breaker = "Once upon a time";
  const std::vector<int32_t> own = tok->encode(breaker, false, false);
  ASSERT_EQ(own.size(), 4u);
  SamplerParams p;
  p.dry_multiplier = 0.8f;
  p.dry_sequence_breakers = {breaker};
  slm::resolve_dry_breakers(p, *tok);
  EXPECT_TRUE(p.dry_breaker_ids.empty());
  EXPECT_NE(std::find(p.dry_breaker_seqs.begin(), p.dry_breaker_seqs.end(), own), p.dry_breaker_seqs.end());
  EXPECT_GT(p.dry_breaker_seqs.size(), 3u);
  for (const std::vector<int32_t>& seq : p.dry_breaker_seqs) {
    ASSERT_GE(seq.size(), 2u);
    const std::string head = tok->token_to_piece(seq[0], true);
    std::string rest;
    for (size_t i = 1; i < seq.size(); ++i) rest += tok->token_to_piece(seq[i], true);
    // The head's text ends with the breaker's first bytes, and the rest spells the others.
    const size_t start = breaker.size() - rest.size();
    ASSERT_LT(start, breaker.size()) << head << "|" << rest;
    EXPECT_EQ(breaker.substr(start), rest) << head << "|" << rest;
    ASSERT_GE(head.size(), start) << head << "|" << rest;
    EXPECT_EQ(head.substr(head.size() - start), breaker.substr(0, start)) << head << "|" << rest;
  }
  // Cut to 40 bytes: a breaker of 60 resolves as its first 40 would.
  SamplerParams longer = p, cut = p;
  longer.dry_sequence_breakers = {std::string(20, '=') + std::string(40, '-')};
  cut.dry_sequence_breakers = {std::string(20, '=') + std::string(20, '-')};
  slm::resolve_dry_breakers(longer, *tok);
  slm::resolve_dry_breakers(cut, *tok);
  EXPECT_EQ(longer.dry_breaker_seqs, cut.dry_breaker_seqs);
  EXPECT_EQ(longer.dry_breaker_ids, cut.dry_breaker_ids);
}

}  // namespace
