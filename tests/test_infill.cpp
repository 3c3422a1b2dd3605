// Fill-in-the-middle: the prompt layout of llama.cpp's /infill (format_infill) on the Qwen2
// vocabulary with Qwen2.5-Coder's FIM ids, what is cut when the context is short, the errors,
// --override-kv, and `slm infill` / api::Session::infill end to end on a random-weight model.
//
// The shared Qwen2 vocabulary predates Qwen2.5's FIM tokens; its ids 151659..151664 (where
// Qwen2.5-Coder has <|fim_prefix|>, <|fim_middle|>, <|fim_suffix|>, <|fim_pad|>,
// <|repo_name|>, <|file_sep|>) are padding entries, named FIM tokens here through the
// tokenizer.ggml.fim_*_token_id keys, as a converter would write them.
#include <gtest/gtest.h>
#include <slm/slm.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "convert/synth.h"
#include "core/error.h"
#include "core/gguf.h"
#include "runtime/infill.h"
#include "runtime/scheduler.h"
#include "support/fixtures.h"
#include "support/run_cli.h"
#include "support/temp_dir.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using slm::InfillBudget;
using slm::InfillInput;
using slm::InfillPrompt;

namespace {

constexpr int32_t kPre = 151659, kMid = 151660, kSuf = 151661, kPad = 151662, kRep = 151663, kSep = 151664;

std::vector<std::string> qwen_fim_overrides(bool repo_level = true) {
  std::vector<std::string> o = {"tokenizer.ggml.fim_pre_token_id=int:151659",
                                "tokenizer.ggml.fim_mid_token_id=int:151660",
                                "tokenizer.ggml.fim_suf_token_id=int:151661"};
  if (repo_level) {
    o.push_back("tokenizer.ggml.fim_pad_token_id=int:151662");
    o.push_back("tokenizer.ggml.fim_rep_token_id=int:151663");
    o.push_back("tokenizer.ggml.fim_sep_token_id=int:151664");
  }
  return o;
}

slm::test::ProgramTempDir& temp() {
  static slm::test::ProgramTempDir d("infill");
  return d;
}

// A tiny qwen2 model with the Qwen2 vocabulary whose file carries the FIM keys (written once).
std::string fim_model(const fs::path& vocab) {
  const fs::path out = temp().path() / "tiny-qwen2-fim.gguf";
  if (fs::exists(out)) return out.string();
  const fs::path plain = temp().path() / "tiny-qwen2.gguf";
  slm::convert::SynthOptions so;
  so.like = "tiny-qwen2";
  so.vocab_path = vocab.string();
  so.out_path = plain.string();
  so.progress = false;
  slm::convert::synth_model(so);
  auto f = slm::GGUFFile::open(plain.string(), qwen_fim_overrides());
  slm::GGUFWriter w;
  for (const auto& [k, v] : f->metadata()) w.set(k, v);
  for (const auto& t : f->tensors()) w.add_tensor(t.name, t.type, t.ne, t.data, t.nbytes, false);
  w.write(out.string());
  return out.string();
}

std::vector<int32_t> text(const slm::Tokenizer& tok, const std::string& s) { return tok.encode(s, false, false); }

void append(std::vector<int32_t>& a, const std::vector<int32_t>& b) { a.insert(a.end(), b.begin(), b.end()); }

}  // namespace

TEST(Infill, FimTokensFromMetadataAndEndOfGeneration) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-qwen2.gguf");
  auto plain = slm::Tokenizer::from_gguf(*slm::GGUFFile::open(vocab.string()));
  EXPECT_EQ(plain->fim_pre(), -1);
  EXPECT_NE(slm::infill_unsupported(*plain).find("cannot fill in the middle"), std::string::npos);
  auto tok = slm::Tokenizer::from_gguf(*slm::GGUFFile::open(vocab.string(), qwen_fim_overrides()));
  EXPECT_EQ(tok->fim_pre(), kPre);
  EXPECT_EQ(tok->fim_suf(), kSuf);
  EXPECT_EQ(tok->fim_mid(), kMid);
  EXPECT_EQ(tok->fim_pad(), kPad);
  EXPECT_EQ(tok->fim_rep(), kRep);
  EXPECT_EQ(tok->fim_sep(), kSep);
  EXPECT_EQ(slm::infill_unsupported(*tok), "");
  // As in llama.cpp, pad, repo and file separator end a generation; the frame tokens do not.
  for (int32_t id : {kPad, kRep, kSep}) EXPECT_TRUE(tok->is_eog(id)) << id;
  for (int32_t id : {kPre, kSuf, kMid}) EXPECT_FALSE(tok->is_eog(id)) << id;
}

TEST(Infill, RepoLevelLayoutAsLlamaCppBuildsIt) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-qwen2.gguf");
  auto tok = slm::Tokenizer::from_gguf(*slm::GGUFFile::open(vocab.string(), qwen_fim_overrides()));
  InfillInput in;
  in.prefix = "def area(r):\n    ";
  in.suffix = "\n\nprint(area(2.0))\n";
  in.middle = "return";
  in.extra = {{"geometry.py", "PI = 3.14159\n"}, {"tmp", "x = 1\n"}};
  const InfillPrompt p = slm::infill_prompt(*tok, in, {4096, 128});
  // [REP]myproject\n [SEP]geometry.py\n PI... [SEP]tmp\n x = 1\n [SEP]filename\n
  // [PRE]prefix middle [SUF]suffix [MID] (Qwen2 adds no BOS)
  std::vector<int32_t> want = {kRep};
  append(want, text(*tok, "myproject\n"));
  want.push_back(kSep);
  append(want, text(*tok, "geometry.py\n"));
  append(want, text(*tok, "PI = 3.14159\n"));
  want.push_back(kSep);
  append(want, text(*tok, "tmp\n"));
  append(want, text(*tok, "x = 1\n"));
  want.push_back(kSep);
  append(want, text(*tok, "filename\n"));
  want.push_back(kPre);
  append(want, text(*tok, in.prefix));
  append(want, text(*tok, "return"));
  want.push_back(kSuf);
  append(want, text(*tok, in.suffix));
  want.push_back(kMid);
  EXPECT_EQ(p.tokens, want);
  EXPECT_FALSE(p.truncated());

  // Suffix-prefix-middle order.
  in.spm = true;
  const InfillPrompt s = slm::infill_prompt(*tok, in, {4096, 128});
  ASSERT_EQ(s.tokens.size(), p.tokens.size());
  const auto at_pre = std::find(p.tokens.begin(), p.tokens.end(), kPre) - p.tokens.begin();
  std::vector<int32_t> spm(p.tokens.begin(), p.tokens.begin() + at_pre);
  spm.push_back(kSuf);
  append(spm, text(*tok, in.suffix));
  spm.push_back(kPre);
  append(spm, text(*tok, in.prefix));
  append(spm, text(*tok, "return"));
  spm.push_back(kMid);
  EXPECT_EQ(s.tokens, spm);
}

TEST(Infill, WithoutRepoTokensExtraFilesAreSnippets) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-qwen2.gguf");
  auto tok = slm::Tokenizer::from_gguf(*slm::GGUFFile::open(vocab.string(), qwen_fim_overrides(false)));
  InfillInput in;
  in.prefix = "a = ";
  in.suffix = "\n";
  in.extra = {{"b.py", "b = 2\n"}};
  const InfillPrompt p = slm::infill_prompt(*tok, in, {4096, 16});
  std::vector<int32_t> want = text(*tok, "\n\n--- snippet ---\n\n");
  append(want, text(*tok, "b = 2\n"));
  want.push_back(kPre);
  append(want, text(*tok, "a = "));
  want.push_back(kSuf);
  append(want, text(*tok, "\n"));
  want.push_back(kMid);
  EXPECT_EQ(p.tokens, want);
}

TEST(Infill, BosComesAfterTheExtraContextWhereTheVocabularyAddsIt) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-llama-spm.gguf");
  // Any three ids will do to see the frame; the SPM vocabulary adds BOS.
  auto tok = slm::Tokenizer::from_gguf(*slm::GGUFFile::open(
      vocab.string(), {"tokenizer.ggml.fim_pre_token_id=int:500", "tokenizer.ggml.fim_suf_token_id=int:501",
                       "tokenizer.ggml.fim_mid_token_id=int:502"}));
  ASSERT_TRUE(tok->add_bos());
  InfillInput in;
  in.prefix = "x";
  in.suffix = "y";
  in.extra = {{"z.c", "int z;"}};
  const InfillPrompt p = slm::infill_prompt(*tok, in, {512, 16});
  std::vector<int32_t> want = text(*tok, "\n\n--- snippet ---\n\n");
  append(want, text(*tok, "int z;"));
  want.push_back(tok->bos());
  want.push_back(500);
  append(want, text(*tok, "x"));
  want.push_back(501);
  append(want, text(*tok, "y"));
  want.push_back(502);
  EXPECT_EQ(p.tokens, want);
}

TEST(Infill, ShortContextKeepsWhatIsNearestTheCursor) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-qwen2.gguf");
  auto tok = slm::Tokenizer::from_gguf(*slm::GGUFFile::open(vocab.string(), qwen_fim_overrides()));
  std::string prefix, suffix, other;
  for (int i = 0; i < 300; ++i) {
    const std::string n = std::to_string(i);
    prefix.append("p").append(n).append(" = ").append(n).append("\n");
    suffix.append("s").append(n).append(" = ").append(n).append("\n");
    other.append("o").append(n).append("\n");
  }
  const auto pre = text(*tok, prefix), suf = text(*tok, suffix);
  InfillInput in;
  in.prefix = prefix;
  in.suffix = suffix;
  in.extra = {{"other.py", other}};
  const InfillBudget b{1024, 100, 400};
  const InfillPrompt p = slm::infill_prompt(*tok, in, b);
  ASSERT_TRUE(p.truncated());
  EXPECT_LE(static_cast<int64_t>(p.tokens.size()), b.n_ctx - b.n_generate);
  // The window of 400 tokens goes 3:1 to prefix and suffix; the rest of the room to the extra.
  EXPECT_EQ(p.prefix_tokens, 300);
  EXPECT_EQ(p.suffix_tokens, 100);
  EXPECT_EQ(p.prefix_cut, static_cast<int64_t>(pre.size()) - 300);
  EXPECT_EQ(p.suffix_cut, static_cast<int64_t>(suf.size()) - 100);
  EXPECT_EQ(static_cast<int64_t>(p.tokens.size()), b.n_ctx - b.n_generate) << "every free token used";
  // The prefix keeps its end, the suffix its start, the extra context its end (the file
  // header of the file being edited last).
  const auto at_pre = std::find(p.tokens.begin(), p.tokens.end(), kPre) - p.tokens.begin();
  const auto at_suf = std::find(p.tokens.begin(), p.tokens.end(), kSuf) - p.tokens.begin();
  EXPECT_TRUE(std::equal(pre.end() - 300, pre.end(), p.tokens.begin() + at_pre + 1));
  EXPECT_TRUE(std::equal(suf.begin(), suf.begin() + 100, p.tokens.begin() + at_suf + 1));
  std::vector<int32_t> file_header = {kSep};
  append(file_header, text(*tok, "filename\n"));
  EXPECT_TRUE(std::equal(file_header.begin(), file_header.end(), p.tokens.begin() + at_pre - file_header.size()));
  EXPECT_EQ(p.extra_tokens, at_pre);

  // A short suffix leaves its share to the prefix.
  in.suffix = "end\n";
  in.extra.clear();
  const InfillPrompt q = slm::infill_prompt(*tok, in, b);
  EXPECT_EQ(q.suffix_tokens, static_cast<int64_t>(text(*tok, "end\n").size()));
  EXPECT_EQ(q.prefix_tokens, 400 - q.suffix_tokens);
}

TEST(Infill, ClearErrors) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-qwen2.gguf");
  auto plain = slm::Tokenizer::from_gguf(*slm::GGUFFile::open(vocab.string()));
  InfillInput in;
  in.prefix = "a";
  in.suffix = "b";
  try {
    slm::infill_prompt(*plain, in, {512, 16});
    FAIL() << "a vocabulary without FIM tokens was accepted";
  } catch (const slm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no FIM prefix, suffix, middle token"), std::string::npos) << e.what();
  }
  auto tok = slm::Tokenizer::from_gguf(*slm::GGUFFile::open(vocab.string(), qwen_fim_overrides()));
  in.middle = std::string(2000, 'x') + " y";
  try {
    slm::infill_prompt(*tok, in, {256, 64});
    FAIL() << "a middle longer than the context was accepted";
  } catch (const slm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("do not fit in a context of 256 tokens"), std::string::npos) << e.what();
  }
}

TEST(Infill, OverrideKvRefusesMalformedValues) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-qwen2.gguf");
  for (const char* bad : {"novalue", "=int:1", "k=int", "k=int:", "k=int:12x", "k=float:abc", "k=bool:yes", "k=i64:3"}) {
    try {
      slm::GGUFFile::open(vocab.string(), {bad});
      ADD_FAILURE() << bad << " was accepted";
    } catch (const slm::Error& e) {
      EXPECT_NE(std::string(e.what()).find("--override-kv '" + std::string(bad) + "'"), std::string::npos) << e.what();
    }
  }
  auto f = slm::GGUFFile::open(vocab.string(), {"general.name=str:renamed", "x.float=float:0.5", "x.flag=bool:true",
                                                "tokenizer.ggml.bos_token_id=int:7"});
  EXPECT_EQ(f->get_string("general.name"), "renamed");
  EXPECT_DOUBLE_EQ(f->get_float("x.float"), 0.5);
  EXPECT_TRUE(f->get_bool("x.flag"));
  EXPECT_EQ(slm::Tokenizer::from_gguf(*f)->bos(), 7);
}

TEST(Infill, CliFillsAFileAtACursor) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-qwen2.gguf");
  const std::string model = fim_model(vocab);
  const fs::path src = temp().path() / "area.py";
  {
    std::ofstream(src) << "import math\n\ndef area(r):\n    return \n\nprint(area(2.0))\n";
  }
  // --file/--at splits the file as --prefix/--suffix would give it; only the file's name differs.
  const auto a = slm::test::run_cli({"infill", "-m", model, "--file", src.string(), "--at", "4:12", "-n", "8",
                                     "--temp", "0", "--print-prompt"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_FALSE(a.out.empty());
  const auto c = slm::test::run_cli({"infill", "-m", model, "--prefix", "import math\n\ndef area(r):\n    return ",
                                     "--suffix", "\n\nprint(area(2.0))\n", "-n", "8", "--temp", "0", "--print-prompt"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const size_t at_a = a.err.find("[PAD151664]area.py\n"), at_c = c.err.find("[PAD151664]filename\n");
  ASSERT_NE(at_a, std::string::npos) << a.err;
  ASSERT_NE(at_c, std::string::npos) << c.err;
  const std::string rest = a.err.substr(at_a + 19);
  EXPECT_EQ(rest, c.err.substr(at_c + 20));
  EXPECT_EQ(rest.rfind("[PAD151659]import math\n\ndef area(r):\n    return [PAD151661]\n\nprint(area(2.0))\n[PAD151660]", 0), 0u)
      << rest;

  // Errors: the cursor outside the file, a model without FIM tokens, nothing to fill.
  const auto far = slm::test::run_cli({"infill", "-m", model, "--file", src.string(), "--at", "40:1"});
  EXPECT_EQ(far.exit_code, 1);
  EXPECT_NE(far.err.find("has only 7 lines"), std::string::npos) << far.err;
  const auto col = slm::test::run_cli({"infill", "-m", model, "--file", src.string(), "--at", "1:99"});
  EXPECT_NE(col.err.find("line 1 of"), std::string::npos) << col.err;
  const auto form = slm::test::run_cli({"infill", "-m", model, "--file", src.string(), "--at", "4"});
  EXPECT_NE(form.err.find("LINE:COLUMN"), std::string::npos) << form.err;
  const auto none = slm::test::run_cli({"infill", "-m", model});
  EXPECT_NE(none.err.find("nothing to fill in"), std::string::npos) << none.err;
  SLM_REQUIRE_FIXTURE(stories, "models/stories260K.gguf");
  const auto nofim = slm::test::run_cli({"infill", "-m", stories.string(), "--prefix", "a", "--suffix", "b"});
  EXPECT_EQ(nofim.exit_code, 1);
  EXPECT_NE(nofim.err.find("cannot fill in the middle"), std::string::npos) << nofim.err;
}

TEST(Infill, OverrideKvOnTheCommandLine) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-qwen2.gguf");
  fim_model(vocab);
  const std::string plain = (temp().path() / "tiny-qwen2.gguf").string();
  std::vector<std::string> args = {"infill", "-m", plain, "--prefix", "x = ", "--suffix", "\n", "-n", "4", "--temp", "0"};
  const auto refused = slm::test::run_cli(args);
  EXPECT_NE(refused.err.find("cannot fill in the middle"), std::string::npos) << refused.err;
  for (const std::string& o : qwen_fim_overrides()) {
    args.push_back("--override-kv");
    args.push_back(o);
  }
  const auto ok = slm::test::run_cli(args);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  const auto same = slm::test::run_cli({"infill", "-m", fim_model(vocab), "--prefix", "x = ", "--suffix", "\n", "-n", "4",
                                        "--temp", "0"});
  EXPECT_EQ(ok.out, same.out) << "overrides on the command line act as the keys in the file";
  args.push_back("--override-kv");
  args.push_back("tokenizer.ggml.fim_pre_token_id=float:x");
  const auto bad = slm::test::run_cli(args);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("KEY=TYPE:VALUE"), std::string::npos) << bad.err;
}

TEST(Infill, PublicApiMatchesTheCli) {
  SLM_REQUIRE_FIXTURE(vocab, "fixtures/vocab/ggml-vocab-qwen2.gguf");
  const std::string model = fim_model(vocab);
  slm::api::Model m;
  ASSERT_TRUE(slm::api::Model::load(model, &m).ok);
  EXPECT_TRUE(m.can_infill());
  slm::api::Session s(m, {.n_ctx = 512, .n_threads = 1});
  std::string text;
  slm::api::GenerateParams gp;
  gp.n_predict = 6;
  gp.temperature = 0;
  const auto st = s.infill("def f(x):\n    return ", "\n\nprint(f(1))\n", gp,
                           [&](std::string_view piece) {
                             text += piece;
                             return true;
                           });
  ASSERT_TRUE(st.ok) << st.message;
  const auto cli = slm::test::run_cli({"infill", "-m", model, "-c", "512", "-t", "1", "--prefix", "def f(x):\n    return ",
                                       "--suffix", "\n\nprint(f(1))\n", "-n", "6", "--temp", "0"});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_EQ(text, cli.out);

  SLM_REQUIRE_FIXTURE(stories, "models/stories260K.gguf");
  slm::api::Model plain;
  ASSERT_TRUE(slm::api::Model::load(stories.string(), &plain).ok);
  EXPECT_FALSE(plain.can_infill());
  slm::api::Session ps(plain, {.n_ctx = 128});
  const auto refused = ps.infill("a", "b", {}, [](std::string_view) { return true; });
  EXPECT_FALSE(refused.ok);
  EXPECT_NE(refused.message.find("cannot fill in the middle"), std::string::npos) << refused.message;
}

TEST(Infill, IndentLimitCutsTheFirstLineThatLeavesTheBlock) {
  auto run = [](int min, const std::vector<std::string>& pieces) {
    slm::IndentLimit g(min);
    std::string out;
    for (const auto& p : pieces) out += g.push(p);
    return std::pair{out, g.reached()};
  };
  const std::string text = "x = 1\n    y = 2\n\tz\n  w = 3\n    v\n";
  // Tabs count one each, as llama.cpp counts them.
  const auto [whole, cut] = run(4, {text});
  EXPECT_TRUE(cut);
  EXPECT_EQ(whole, "x = 1\n    y = 2\n\t");  // "\tz" is indented 1 < 4: cut before the 'z', after the tab
  EXPECT_EQ(run(1, {text}).first, "x = 1\n    y = 2\n\tz\n  w = 3\n    v\n");
  EXPECT_FALSE(run(1, {text}).second);
  // Piece by piece, the same.
  std::vector<std::string> chars;
  for (char c : text) chars.emplace_back(1, c);
  EXPECT_EQ(run(4, chars).first, whole);
  // The first line (the cursor's) is never checked; a blank line is indentation 0; 0 is off.
  EXPECT_EQ(run(8, {"a\n        b"}).first, "a\n        b");
  EXPECT_EQ(run(1, {"a\n\nb"}).first, "a\n");
  EXPECT_EQ(run(0, {"a\nb\n"}).first, "a\nb\n");
  slm::IndentLimit g(2);
  EXPECT_EQ(g.push("a\nb"), "a\n");
  EXPECT_EQ(g.push("  c"), "") << "nothing after the cut";
}
