// DRY's sequence breakers (SamplerParams::dry_sequence_breakers) resolved against a real
// vocabulary by resolve_dry_breakers (runtime/generate.h); the sampling stage itself is tested
// in test_sampling_stages.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

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

}  // namespace
