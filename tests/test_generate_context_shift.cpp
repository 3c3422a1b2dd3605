// llama.cpp's --context-shift (runtime/generate.h, ContextShift): when the text fills the
// context, the first n_keep tokens stay, half of the rest go (llama-cli's n_discard), and
// generation goes on. Where what stays is evaluated again (ContextShift::reevaluate, and Gemma
// 2's sliding-window rings once they wrap), each generated token must be the one a fresh session
// picks from exactly the tokens the shifts left in the context (so the arithmetic and the
// re-evaluation are both checked); where the cache's keys are rotated (the default: KVCache::shift,
// whose arithmetic test_runtime_kv_shift.cpp checks), the sequence must follow the same
// arithmetic and the text before the first shift be the same. Where nothing can be dropped,
// generation stops as it did without the option.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <chrono>

#include "models/model.h"
#include "runtime/generate.h"
#include "runtime/scheduler.h"
#include "runtime/session.h"
#include "sampling/sampler.h"
#include "support/fixtures.h"
#include "support/run_cli.h"
#include "support/tiny_gemma2.h"
#include "support/temp_dir.h"
#include "tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;

slm::SessionOptions options(int n_ctx) {
  slm::SessionOptions so;
  so.n_ctx = n_ctx;
  so.n_threads = 2;
  so.n_batch = 16;
  return so;
}

// Greedy, never ending early: every token until n_predict.
slm::SamplerParams greedy(const slm::Tokenizer& tok) {
  slm::SamplerParams p;
  p.temperature = 0.0f;
  for (int32_t id : tok.eog_ids()) p.logit_bias.emplace_back(id, -std::numeric_limits<float>::infinity());
  return p;
}

int32_t argmax_after(const slm::Model& model, const std::vector<int32_t>& tokens, const slm::Tokenizer& tok) {
  slm::Session fresh(model, options(static_cast<int>(tokens.size())));
  const std::vector<float>& logits = fresh.eval(tokens);
  std::vector<float> l(logits.begin(), logits.begin() + model.hparams().n_vocab);
  for (int32_t id : tok.eog_ids()) l[static_cast<size_t>(id)] = -std::numeric_limits<float>::infinity();
  return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
}

// Generates n tokens with the shift and replays them: the context as llama-cli's arithmetic
// leaves it before each token, evaluated by a fresh session, picks that token (every token
// where `fresh_picks`, else those before the first shift).
void expect_shifts_follow_llama_cli(const slm::Model& model, const std::vector<int32_t>& prompt, int n_ctx, int n_keep,
                                    int n_predict, int min_shifts, const std::string& what, bool reevaluate,
                                    bool fresh_picks) {
  auto tok = slm::Tokenizer::from_gguf(model.gguf());
  slm::Session session(model, options(n_ctx));
  slm::Sampler sampler(greedy(*tok), static_cast<int32_t>(model.hparams().n_vocab));
  const slm::GenerateResult r = slm::generate(session, *tok, sampler, prompt, n_predict,
                                              [](const std::string&) { return true; }, {true, n_keep, reevaluate});
  ASSERT_EQ(static_cast<int>(r.tokens.size()), n_predict) << what;
  EXPECT_FALSE(r.context_full) << what;
  EXPECT_GE(r.context_shifts, min_shifts) << what;

  std::vector<int32_t> context = prompt;
  int shifts = 0, mismatches = 0;
  for (size_t i = 0; i < r.tokens.size(); ++i) {
    const int32_t want = fresh_picks || shifts == 0 ? argmax_after(model, context, *tok) : r.tokens[i];
    if (want != r.tokens[i] && ++mismatches <= 3)
      ADD_FAILURE() << what << ": token " << i << " is " << r.tokens[i] << ", a fresh session on the " << context.size()
                    << " tokens left after " << shifts << " shifts picks " << want;
    if (static_cast<int>(context.size()) == n_ctx) {  // full: llama-cli's n_discard
      const int n_discard = (n_ctx - n_keep) / 2;
      context.erase(context.begin() + n_keep, context.begin() + n_keep + n_discard);
      ++shifts;
    }
    context.push_back(r.tokens[i]);
  }
  EXPECT_EQ(mismatches, 0) << what;
  EXPECT_EQ(shifts, r.context_shifts) << what;
  EXPECT_EQ(session.tokens(), std::vector<int32_t>(context.begin(), context.end() - 1)) << what;

  // The same run without the shift is the same text up to the full context, then stops there.
  slm::Session plain(model, options(n_ctx));
  slm::Sampler s2(greedy(*tok), static_cast<int32_t>(model.hparams().n_vocab));
  const slm::GenerateResult stop = slm::generate(plain, *tok, s2, prompt, n_predict, [](const std::string&) { return true; });
  EXPECT_TRUE(stop.context_full) << what;
  EXPECT_EQ(stop.context_shifts, 0) << what;
  ASSERT_EQ(stop.tokens.size(), static_cast<size_t>(n_ctx) - prompt.size() + 1) << what;
  EXPECT_TRUE(std::equal(stop.tokens.begin(), stop.tokens.end(), r.tokens.begin())) << what;
}

// tiny-gemma2 (window 8), synthesized once for this program; empty, with synth's error, where
// that failed.
const std::string& tiny_gemma2(const fs::path& vocab, std::string* error) {
  static const slm::test::ProgramTempDir dir("context-shift");
  static std::string synth_error;
  static const std::string path = slm::test::synth_tiny_gemma2(vocab, dir.path(), &synth_error);
  *error = synth_error;
  return path;
}

std::vector<int32_t> prompt_of(const slm::Tokenizer& tok, int n, int n_vocab) {
  std::vector<int32_t> p{tok.bos()};
  for (int i = 1; i < n; ++i) p.push_back(3 + (i * 41) % (n_vocab - 3));
  return p;
}

// tiny-gemma2 loaded, its tokenizer and a 10-token prompt; no model, with synth's error, where
// that failed.
struct GemmaRun {
  std::unique_ptr<slm::Model> model;
  std::unique_ptr<slm::Tokenizer> tok;
  std::vector<int32_t> prompt;
  std::string error;
};
GemmaRun gemma_run(const fs::path& vocab) {
  GemmaRun g;
  const std::string& path = tiny_gemma2(vocab, &g.error);
  if (path.empty()) return g;
  g.model = slm::Model::load(path);
  g.tok = slm::Tokenizer::from_gguf(g.model->gguf());
  g.prompt = prompt_of(*g.tok, 10, 2000);
  return g;
}

TEST(ContextShift, EachTokenIsAFreshSessionsPickOnWhatTheShiftsLeft) {
  SLM_REQUIRE_FIXTURE(path, "models/stories260K.gguf");
  auto model = slm::Model::load(path.string());
  auto tok = slm::Tokenizer::from_gguf(model->gguf());
  const auto prompt = prompt_of(*tok, 12, static_cast<int>(model->hparams().n_vocab));
  expect_shifts_follow_llama_cli(*model, prompt, 48, 5, 120, 4, "stories260K, keep 5", true, true);
  expect_shifts_follow_llama_cli(*model, prompt, 48, 0, 100, 3, "stories260K, keep 0", true, true);
  expect_shifts_follow_llama_cli(*model, prompt, 48, 12, 90, 2, "stories260K, the whole prompt kept", true, true);
}

// The default: the cache's rows move, keys rotated (stories260K's six layers keep what they
// computed with the dropped tokens in view, so later picks may differ from a fresh session's).
TEST(ContextShift, RotatedKeysFollowTheSameArithmetic) {
  SLM_REQUIRE_FIXTURE(path, "models/stories260K.gguf");
  auto model = slm::Model::load(path.string());
  auto tok = slm::Tokenizer::from_gguf(model->gguf());
  const auto prompt = prompt_of(*tok, 12, static_cast<int>(model->hparams().n_vocab));
  expect_shifts_follow_llama_cli(*model, prompt, 48, 5, 120, 4, "stories260K, keys rotated, keep 5", false, false);
  expect_shifts_follow_llama_cli(*model, prompt, 48, 0, 100, 3, "stories260K, keys rotated, keep 0", false, false);
}

// Gemma 2's sliding-window layers (tiny-gemma2: window 8) keep rings (here of 8 + 16 - 1
// positions). In a context of 40 keeping 4, the ring's window after the shift (positions -1..21)
// would reach back into kept positions it no longer holds: what stays is evaluated again, the
// kept tokens too, by default as well.
TEST(ContextShift, SlidingWindowRingsShiftToo) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-bert-bge.gguf");
  const GemmaRun g = gemma_run(vocab);
  ASSERT_TRUE(g.model) << g.error;
  expect_shifts_follow_llama_cli(*g.model, g.prompt, 40, 4, 80, 3, "tiny-gemma2, keep 4", false, true);
}

// In a context of 96 the ring's window after a shift (positions 27..49) lies past the dropped
// run: the rings move with their keys rotated, as the full layers do (no evaluation again: the
// rows after n_keep are no longer exact), following llama-cli's arithmetic.
TEST(ContextShift, WrappedSlidingRingsMoveWhenTheirWindowLiesPastTheDrop) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-bert-bge.gguf");
  const GemmaRun g = gemma_run(vocab);
  ASSERT_TRUE(g.model) << g.error;
  expect_shifts_follow_llama_cli(*g.model, g.prompt, 96, 4, 200, 2, "tiny-gemma2, wrapped rings moved", false, false);
  slm::Session session(*g.model, options(96));
  slm::Sampler sampler(greedy(*g.tok), static_cast<int32_t>(g.model->hparams().n_vocab));
  const auto r = slm::generate(session, *g.tok, sampler, g.prompt, 200, [](const std::string&) { return true; }, {true, 4});
  ASSERT_GE(r.context_shifts, 2);
  EXPECT_EQ(session.n_exact(), 4) << "the rows were moved, not evaluated again";
}

TEST(ContextShift, NothingToDropStopsAsWithoutIt) {
  SLM_REQUIRE_FIXTURE(path, "models/stories260K.gguf");
  auto model = slm::Model::load(path.string());
  auto tok = slm::Tokenizer::from_gguf(model->gguf());
  EXPECT_EQ(slm::context_shift_discard(48, 5), 21);
  EXPECT_EQ(slm::context_shift_discard(48, 47), 0);
  EXPECT_EQ(slm::context_shift_discard(48, 100), 0);
  // llama-cli's --keep counts prompt tokens after BOS; -1 or more than the prompt: all of it.
  const std::vector<int32_t> with_bos = {tok->bos(), 10, 11, 12, 13};
  ASSERT_TRUE(tok->add_bos());
  EXPECT_EQ(slm::resolve_n_keep(with_bos, *tok, 0), 1);
  EXPECT_EQ(slm::resolve_n_keep(with_bos, *tok, 3), 4);
  EXPECT_EQ(slm::resolve_n_keep(with_bos, *tok, 4), 5);
  EXPECT_EQ(slm::resolve_n_keep(with_bos, *tok, 5), 5);
  EXPECT_EQ(slm::resolve_n_keep(with_bos, *tok, 6), 5);
  EXPECT_EQ(slm::resolve_n_keep(with_bos, *tok, -1), 5);
  EXPECT_EQ(slm::resolve_n_keep(std::vector<int32_t>{10, 11, 12}, *tok, 2), 2);
  const auto prompt = prompt_of(*tok, 47, static_cast<int>(model->hparams().n_vocab));
  slm::Session session(*model, options(48));
  slm::Sampler sampler(greedy(*tok), static_cast<int32_t>(model->hparams().n_vocab));
  const auto r = slm::generate(session, *tok, sampler, prompt, 50, [](const std::string&) { return true; }, {true, 47});
  EXPECT_TRUE(r.context_full);
  EXPECT_EQ(r.context_shifts, 0);
  EXPECT_EQ(r.tokens.size(), 2u);
}

// The server's scheduler (slm serve --context-shift) shifts each request as generate() does:
// three requests at once, with their own n_keep, give generate()'s text token for token, and
// without the option each ends at the context with finish_reason "length".
void expect_scheduler_shifts_as_generate(const slm::Model& model, const std::vector<std::pair<std::string, int>>& asks,
                                         int n_ctx, int n_predict, const std::string& what) {
  auto tok = slm::Tokenizer::from_gguf(model.gguf());
  for (const bool shift : {true, false}) {
    slm::SchedulerOptions so;
    so.n_parallel = static_cast<int>(asks.size());
    so.n_ctx = n_ctx;
    so.n_batch = 16;
    so.n_threads = 2;
    so.context_shift = shift;
    slm::BatchScheduler sched(model, *tok, so);
    std::vector<std::shared_ptr<slm::RequestHandle>> handles;
    for (const auto& [text, keep] : asks) {
      slm::GenerationRequest r;
      r.prompt = tok->encode(text, true, false);
      r.max_tokens = n_predict;
      r.sampling = greedy(*tok);  // end-of-generation tokens banned: every request runs to max_tokens
      r.n_keep = keep;
      handles.push_back(std::make_shared<slm::RequestHandle>());
      ASSERT_EQ(sched.submit(std::move(r), handles.back()), slm::Scheduler::Submit::Accepted);
    }
    for (size_t i = 0; i < asks.size(); ++i) {
      const std::string ask = what + ", " + asks[i].first + (shift ? " (shifted)" : "");
      std::string text, finish;
      int n = 0;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (std::chrono::steady_clock::now() < deadline) {
        slm::RequestEvents ev = handles[i]->wait(std::chrono::milliseconds(100));
        text += ev.text;
        if (ev.finished) {
          finish = ev.finish_reason;
          n = ev.completion_tokens;
          break;
        }
      }
      const std::vector<int32_t> prompt = tok->encode(asks[i].first, true, false);
      slm::Session session(model, options(n_ctx));
      slm::Sampler sampler(greedy(*tok), static_cast<int32_t>(model.hparams().n_vocab));
      const slm::GenerateResult want =
          slm::generate(session, *tok, sampler, prompt, n_predict, [](const std::string&) { return true; },
                        {shift, slm::resolve_n_keep(prompt, *tok, asks[i].second)});
      EXPECT_EQ(finish, "length") << ask;
      if (shift) {
        EXPECT_EQ(n, n_predict) << ask;
        EXPECT_GE(want.context_shifts, 2) << ask;
      } else {
        EXPECT_EQ(n, n_ctx - static_cast<int>(prompt.size()) + 1) << ask;
      }
      EXPECT_EQ(text, want.text) << ask;
    }
    EXPECT_EQ(sched.stats().context_shifts > 0, shift) << what;
  }
}

TEST(ContextShiftScheduler, RequestsShiftAsGenerateDoes) {
  SLM_REQUIRE_FIXTURE(path, "models/stories260K.gguf");
  auto model = slm::Model::load(path.string());
  expect_scheduler_shifts_as_generate(
      *model, {{"Once upon a time", 0}, {"Lily and Tom went to the park", 3}, {"The little dog", -1}}, 48, 110,
      "stories260K");
}

// tiny-gemma2's rings (window 8) wrap at 40 positions, so a truncation to n_keep keeps less.
TEST(ContextShiftScheduler, SlidingWindowRingsShiftAsGenerateDoes) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-bert-bge.gguf");
  std::string error;
  const std::string& gemma = tiny_gemma2(vocab, &error);
  ASSERT_FALSE(gemma.empty()) << error;
  auto model = slm::Model::load(gemma);
  expect_scheduler_shifts_as_generate(*model, {{"the cat sat on the mat", 2}, {"a b c", -1}}, 40, 90, "tiny-gemma2");
}

TEST(ContextShiftCli, RunGoesOnPastTheContextOnlyWhenAsked) {
  SLM_REQUIRE_FIXTURE(path, "models/stories260K.gguf");
  const std::vector<std::string> base = {"run", "-m", path.string(), "-p", "Once upon a time", "-n", "150",
                                         "--temp", "0", "-c", "48", "--ignore-eos", "--timings"};
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return slm::test::run_cli(args);
  };
  const auto stop = run({});
  ASSERT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_NE(stop.err.find("the context (48 tokens) is full (--context-shift goes on past it"), std::string::npos) << stop.err;
  const auto shifted = run({"--context-shift", "--keep", "-1"});
  ASSERT_EQ(shifted.exit_code, 0) << shifted.err;
  EXPECT_NE(shifted.err.find("150 tokens at"), std::string::npos) << shifted.err;
  EXPECT_NE(shifted.err.find("filled"), std::string::npos) << shifted.err;
  EXPECT_EQ(shifted.out.rfind(stop.out, 0), 0u) << "the shifted text starts with the stopped one";
  EXPECT_GT(shifted.out.size(), stop.out.size() * 2);
  // --context-shift-reeval (implies --context-shift): what stays is evaluated again, which on
  // stories260K's six layers gives another text after the first shift, and generate()'s with
  // ContextShift::reevaluate.
  const auto reeval = run({"--context-shift-reeval", "--keep", "-1"});
  ASSERT_EQ(reeval.exit_code, 0) << reeval.err;
  EXPECT_NE(reeval.err.find("filled"), std::string::npos) << reeval.err;
  EXPECT_EQ(reeval.out.rfind(stop.out, 0), 0u);
  EXPECT_NE(reeval.out, shifted.out);
  auto model = slm::Model::load(path.string());
  auto tok = slm::Tokenizer::from_gguf(model->gguf());
  for (const bool again : {false, true}) {
    const std::vector<int32_t> prompt = tok->encode("Once upon a time", true, false);
    slm::SessionOptions so = options(48);
    so.n_batch = 128;  // slm run's
    slm::Session session(*model, so);
    slm::Sampler sampler(greedy(*tok), static_cast<int32_t>(model->hparams().n_vocab));
    const auto r = slm::generate(session, *tok, sampler, prompt, 150, [](const std::string&) { return true; },
                                 {true, static_cast<int>(prompt.size()), again});
    EXPECT_NE((again ? reeval.out : shifted.out).find(r.text), std::string::npos)
        << (again ? "reevaluated: " : "rotated: ") << r.text;
  }
  const auto spec = run({"--context-shift", "--lookup"});
  EXPECT_EQ(spec.exit_code, 1);
  EXPECT_NE(spec.err.find("--context-shift works with plain generation only"), std::string::npos) << spec.err;
}

}  // namespace
