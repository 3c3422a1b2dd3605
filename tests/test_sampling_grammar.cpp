// GBNF grammars (sampling/grammar.h): parsing, matching text, the vocabulary walk, and the
// sampler keeping to a grammar.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "sampling/grammar.h"
#include "sampling/sampler.h"

namespace slm {
namespace {

bool matches(std::string_view gbnf, std::string_view text) {
  GrammarState s(Grammar::parse(gbnf));
  return s.advance(text) && s.can_end();
}

// The text can be continued into a sentence (advance() succeeds), whether or not it is one.
bool prefix_ok(std::string_view gbnf, std::string_view text) {
  GrammarState s(Grammar::parse(gbnf));
  return s.advance(text);
}

std::string parse_error(std::string_view gbnf) {
  try {
    Grammar::parse(gbnf);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Grammar, LiteralsAndAlternatives) {
  const char* g = R"(root ::= "yes" | "no" | "maybe" " " "so")";
  EXPECT_TRUE(matches(g, "yes"));
  EXPECT_TRUE(matches(g, "no"));
  EXPECT_TRUE(matches(g, "maybe so"));
  EXPECT_FALSE(matches(g, "ye"));
  EXPECT_TRUE(prefix_ok(g, "ye"));
  EXPECT_FALSE(prefix_ok(g, "yes!"));
  EXPECT_FALSE(matches(g, "maybe"));
  EXPECT_FALSE(matches(g, ""));
}

TEST(Grammar, ClassesRangesNegationAndAny) {
  EXPECT_TRUE(matches("root ::= [a-c0-9_]", "b"));
  EXPECT_TRUE(matches("root ::= [a-c0-9_]", "7"));
  EXPECT_TRUE(matches("root ::= [a-c0-9_]", "_"));
  EXPECT_FALSE(matches("root ::= [a-c0-9_]", "d"));
  EXPECT_TRUE(matches("root ::= [^\"\\\\]", "x"));
  EXPECT_FALSE(matches("root ::= [^\"\\\\]", "\""));
  EXPECT_FALSE(matches("root ::= [^\"\\\\]", "\\"));
  EXPECT_TRUE(matches("root ::= . .", "a\xC3\xA9"));  // "a" then U+00E9, one character each
  EXPECT_FALSE(matches("root ::= .", "ab"));
  EXPECT_TRUE(matches("root ::= [-a]", "-"));  // a leading or trailing - is literal
  EXPECT_TRUE(matches("root ::= [a-]", "-"));
  EXPECT_TRUE(matches(R"(root ::= [\x00-\x1F] "\u00e9" [\U0001F600])", "\n\xC3\xA9\xF0\x9F\x98\x80"));
}

TEST(Grammar, Repetitions) {
  const char* g = R"(root ::= "a"{2,4} "b"* ("c" "d")+ "e"?)";
  EXPECT_TRUE(matches(g, "aacd"));
  EXPECT_TRUE(matches(g, "aaaabbbcdcde"));
  EXPECT_FALSE(matches(g, "acd"));      // fewer than 2 a
  EXPECT_FALSE(matches(g, "aaaaacd"));  // more than 4
  EXPECT_FALSE(matches(g, "aab"));      // (cd)+ needs one
  EXPECT_FALSE(matches(g, "aacdee"));
  EXPECT_TRUE(matches(R"(root ::= [0-9]{3})", "123"));
  EXPECT_FALSE(matches(R"(root ::= [0-9]{3})", "12"));
  EXPECT_FALSE(matches(R"(root ::= [0-9]{3})", "1234"));
  EXPECT_TRUE(matches(R"(root ::= "x" [0-9]{2,} "y")", "x12345y"));
  EXPECT_FALSE(matches(R"(root ::= "x" [0-9]{2,} "y")", "x1y"));
  EXPECT_TRUE(matches(R"(root ::= "x" "a"{0} "y")", "xy"));
}

TEST(Grammar, RulesCommentsAndLines) {
  const char* g = R"(
# a comma-separated list of small numbers in brackets
root   ::= "[" ws (num (ws "," ws num)*)? ws "]"
num    ::= "-"? [0-9]
           [0-9]?        # a rule may go on over several lines
ws     ::= [ ]*
)";
  EXPECT_TRUE(matches(g, "[]"));
  EXPECT_TRUE(matches(g, "[ 1, -22 ,3 ]"));
  EXPECT_FALSE(matches(g, "[1,]"));
  EXPECT_FALSE(matches(g, "[123]"));
}

TEST(Grammar, RecursionThroughRules) {
  const char* g = R"g(
root ::= value
value ::= "(" value ")" | "x"
)g";
  EXPECT_TRUE(matches(g, "x"));
  EXPECT_TRUE(matches(g, "(((x)))"));
  EXPECT_FALSE(matches(g, "((x)"));
}

TEST(Grammar, MultiByteCharactersSplitAcrossFeeds) {
  auto g = Grammar::parse(R"(root ::= "\u00e9t\u00e9" | [\u4e00-\u9fff]+)");
  GrammarState s(g);
  // é = C3 A9: fed a byte at a time, with the split inside the character.
  EXPECT_TRUE(s.advance("\xC3"));
  EXPECT_FALSE(s.can_end());
  EXPECT_TRUE(s.advance("\xA9t"));
  EXPECT_TRUE(s.advance("\xC3\xA9"));
  EXPECT_TRUE(s.can_end());
  GrammarState c(g);
  EXPECT_TRUE(c.advance("\xE4"));      // a lead byte of U+4000..U+4FFF: could be U+4E00+
  EXPECT_FALSE(c.advance("\x80\x80")); // U+4000 is below the range
  EXPECT_TRUE(c.advance("\xB8\x80"));  // U+4E00
  EXPECT_TRUE(c.can_end());
  GrammarState d(g);
  EXPECT_FALSE(d.advance("\xD0"));  // a Cyrillic lead byte can start nothing here
  EXPECT_FALSE(d.advance("\x80"));  // a continuation byte with no lead is never UTF-8
  // Overlong forms and surrogates are not UTF-8 either, even where "any character" is allowed.
  const char* any = "root ::= .";
  EXPECT_FALSE(prefix_ok(any, "\xF0\x80\x81\xBB"));  // "{" spelled in four bytes
  EXPECT_FALSE(prefix_ok(any, "\xC1\xBB"));
  EXPECT_FALSE(prefix_ok(any, "\xE0\x80"));           // no 3-byte form below U+0800 exists
  EXPECT_FALSE(prefix_ok(any, "\xED\xA0\x80"));      // U+D800, a surrogate
  EXPECT_FALSE(prefix_ok(any, "\xF4\x90"));           // past U+10FFFF
  EXPECT_TRUE(matches(any, "\xE0\xA0\x80"));         // U+0800, the first 3-byte one
  EXPECT_TRUE(matches(any, "\xF4\x8F\xBF\xBF"));    // U+10FFFF
}

TEST(Grammar, CanEndAndMustEnd) {
  GrammarState s(Grammar::parse(R"(root ::= "a" "b"?)"));
  EXPECT_FALSE(s.can_end());
  ASSERT_TRUE(s.advance("a"));
  EXPECT_TRUE(s.can_end());
  EXPECT_FALSE(s.must_end());
  ASSERT_TRUE(s.advance("b"));
  EXPECT_TRUE(s.must_end());
  EXPECT_FALSE(s.advance("b"));
}

TEST(Grammar, RefusedAdvanceLeavesTheStateAlone) {
  GrammarState s(Grammar::parse(R"(root ::= "abc")"));
  ASSERT_TRUE(s.advance("a"));
  EXPECT_FALSE(s.advance("bx"));  // "b" is fine, "x" is not: nothing of it sticks
  EXPECT_TRUE(s.advance("bc"));
  EXPECT_TRUE(s.can_end());
}

TEST(Grammar, ErrorsSayWhatAndWhere) {
  EXPECT_NE(parse_error("root ::= item").find("rule `item` is used (line 1) but never defined"), std::string::npos)
      << parse_error("root ::= item");
  EXPECT_NE(parse_error("start ::= \"a\"").find("no `root` rule"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"abc").find("line 1 column"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"abc").find("unterminated string"), std::string::npos);
  EXPECT_NE(parse_error("root ::= [abc").find("unterminated character class"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"a\"\nroot ::= \"b\"").find("defined twice"), std::string::npos);
  EXPECT_NE(parse_error("root ::= * \"a\"").find("nothing before it to repeat"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"a\"{3,2}").find("maximum is below the minimum"), std::string::npos);
  EXPECT_NE(parse_error("root ::= [z-a]").find("runs backwards"), std::string::npos);
  EXPECT_NE(parse_error("root ::= (\"a\"").find("expected `)`"), std::string::npos);
  EXPECT_NE(parse_error("root ::= \"\\q\"").find("unknown escape"), std::string::npos);
  EXPECT_NE(parse_error("").find("empty"), std::string::npos);
  // Left recursion, direct and through a rule that can match nothing.
  EXPECT_NE(parse_error("root ::= root \"a\" | \"a\"").find("left-recursive"), std::string::npos);
  const std::string indirect = parse_error("root ::= opt list\nopt ::= \"x\"?\nlist ::= root \"a\" | \"b\"");
  EXPECT_NE(indirect.find("left-recursive"), std::string::npos) << indirect;
  // Right recursion is fine.
  EXPECT_EQ(parse_error("root ::= \"a\" root | \"a\""), "(no error)");
}

TEST(Grammar, HelperRulesNeverClashWithWrittenNames) {
  // The group and repetition of x get helper rules; a written rule named like one is its own.
  const char* g = "root ::= x\nx ::= \"a\"* y (\"c\")?\ny ::= x-1\nx-1 ::= \"b\"";
  EXPECT_TRUE(matches(g, "ab"));
  EXPECT_TRUE(matches(g, "aabc"));
  EXPECT_NE(parse_error("root ::= a_b").find("unexpected character `_`"), std::string::npos) << parse_error("root ::= a_b");
}

TEST(Grammar, LongBoundedRepetitionsParseQuickly) {
  // x{0,n} is n helper rules; making them must stay linear (a schema's maxLength: 10000).
  const auto t0 = std::chrono::steady_clock::now();
  GrammarState s(Grammar::parse(R"(root ::= "\"" [a-z]{0,10000} "\"")"));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(ms, 1000.0);  // ~10 s when each rule's name was searched from 1
  EXPECT_TRUE(s.advance("\"" + std::string(9999, 'q') + "\""));
  EXPECT_TRUE(s.can_end());
}

TEST(Grammar, HostileGrammarsAreErrorsNotCrashes) {
  // A million nested groups, a 100k-rule chain, a 100k-rule left-recursive cycle, an ambiguous
  // grammar whose ways through multiply: each a clear error (a server parses these from requests).
  EXPECT_NE(parse_error("root ::= " + std::string(1000000, '(') + "\"a\"" + std::string(1000000, ')'))
                .find("nested deeper than 256"), std::string::npos);
  std::string chain = "root ::= r0\n";
  for (int i = 0; i < 100000; ++i) chain.append("r").append(std::to_string(i)).append(" ::= r").append(std::to_string(i + 1)).append("\n");
  std::string cycle = chain + "r100000 ::= root \"x\"\n";
  chain += "r100000 ::= \"x\"\n";
  EXPECT_NE(parse_error(chain).find("rules begin one inside another"), std::string::npos) << parse_error(chain).substr(0, 200);
  EXPECT_NE(parse_error(cycle).find("left-recursive"), std::string::npos);
  GrammarState s(Grammar::parse(R"(root ::= ("a" | "a" | [a-b] | "a"{1,3})*)"));
  EXPECT_TRUE(s.advance(std::string(200, 'a')));  // merged duplicates keep this small
  // Every "a" doubles the closers that may follow (b or c): thousands of ways after a dozen.
  GrammarState t(Grammar::parse(R"(root ::= x
x ::= "a" x "b" | "a" x "c" | "d")"));
  EXPECT_TRUE(t.advance(std::string(8, 'a')));
  try {
    t.advance(std::string(8, 'a'));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too ambiguous"), std::string::npos) << e.what();
  }
}

TEST(Grammar, OtherStartRule) {
  auto g = Grammar::parse("root ::= \"a\"\nnum ::= [0-9]+", "num");
  GrammarState s(g);
  EXPECT_TRUE(s.advance("42"));
  EXPECT_TRUE(s.can_end());
}

// ---- vocabulary ---------------------------------------------------------------------------

// A vocabulary with shared prefixes, multi-byte characters split over tokens, an empty piece
// (a control token) and an end-of-generation token.
std::vector<std::string> toy_pieces() {
  return {"", "{", "}", "{\"", "\"", "a", "ab", "abc", "\":", " ", "  ", "1", "12", "123", "x",
          "\xC3", "\xA9", "\xC3\xA9", "\":1}", ",", "</s>", ":"};
}
constexpr int32_t kToyEog = 20;

const char* kObjGrammar = R"(root ::= "{" ( "\"" [a-c\u00e9]+ "\":" " "? [0-9]+ ("," "\"" [a-c]+ "\":" [0-9]+)* )? "}")";

TEST(GrammarVocab, AllowedIsEveryTokenThatAdvances) {
  auto g = Grammar::parse(kObjGrammar);
  GrammarVocab v(toy_pieces(), {kToyEog});
  GrammarState s(g);
  // Walk one sentence token by token, checking the mask against token-by-token checks.
  const std::vector<int32_t> path = {3, 15, 16, 6, 17, 8, 9, 12, 19, 4, 7, 18};
  std::vector<uint8_t> allowed;
  for (size_t step = 0; step <= path.size(); ++step) {
    v.allowed(s, allowed);
    for (int32_t id = 0; id < v.n_vocab(); ++id) {
      bool expect;
      if (id == kToyEog) {
        expect = s.can_end();
      } else if (v.piece(id).empty()) {
        expect = false;
      } else {
        GrammarState t = s;
        expect = t.advance(v.piece(id));
      }
      EXPECT_EQ(allowed[static_cast<size_t>(id)] != 0, expect) << "step " << step << " token " << id;
      EXPECT_EQ(v.allows(s, id), expect) << "step " << step << " token " << id;
    }
    if (step < path.size()) {
      ASSERT_TRUE(s.advance(v.piece(path[step]))) << "step " << step;
    }
  }
  EXPECT_TRUE(s.must_end());
  v.allowed(s, allowed);
  for (int32_t id = 0; id < v.n_vocab(); ++id) EXPECT_EQ(allowed[static_cast<size_t>(id)] != 0, id == kToyEog);
}

// ---- the sampler --------------------------------------------------------------------------

TEST(SamplerGrammar, PicksOnlyWhatTheGrammarAllows) {
  auto g = Grammar::parse(kObjGrammar);
  auto v = std::make_shared<const GrammarVocab>(toy_pieces(), std::vector<int32_t>{kToyEog});
  for (float temp : {0.0f, 1.0f}) {
    SamplerParams p;
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 7;
    Sampler smp(p, v->n_vocab());
    smp.set_grammar({g, v});
    std::mt19937 rng(3);
    std::normal_distribution<float> noise(0.0f, 2.0f);
    std::string text;
    int i = 0;
    for (; i < 200; ++i) {
      std::vector<float> logits(static_cast<size_t>(v->n_vocab()));
      for (float& l : logits) l = noise(rng);
      logits[14] = 50.0f;  // "x": never allowed, and the model's favourite
      if (i > 30) logits[kToyEog] = 40.0f;  // after a while the model wants to stop
      int32_t t = -1;
      try {
        t = smp.sample(logits.data());
      } catch (const Error& e) {
        FAIL() << e.what() << " after " << text;
      }
      ASSERT_NE(t, 14);
      if (t == kToyEog) break;
      smp.accept_sampled(t);
      text += v->piece(t);
    }
    ASSERT_LT(i, 200) << "never ended: " << text;
    EXPECT_TRUE(matches(kObjGrammar, text)) << text;
    ASSERT_NE(smp.grammar_state(), nullptr);
    EXPECT_TRUE(smp.grammar_state()->can_end());
    // reset() goes back to the start of the grammar.
    smp.reset();
    EXPECT_FALSE(smp.grammar_state()->can_end());
    std::vector<float> logits(static_cast<size_t>(v->n_vocab()), 0.0f);
    logits[2] = 10.0f;  // "}" cannot start
    const int32_t first = smp.sample(logits.data());
    EXPECT_TRUE(first == 1 || first == 3) << first;
  }
}

TEST(SamplerGrammar, GreedyKeepsTheArgmaxWhenAllowed) {
  auto g = Grammar::parse(R"(root ::= [a-z]+)");
  auto v = std::make_shared<const GrammarVocab>(toy_pieces(), std::vector<int32_t>{kToyEog});
  SamplerParams p;
  p.temperature = 0.0f;
  Sampler smp(p, v->n_vocab());
  smp.set_grammar({g, v});
  std::vector<float> logits(static_cast<size_t>(v->n_vocab()), 0.0f);
  logits[7] = 5.0f;  // "abc"
  logits[6] = 4.0f;
  EXPECT_EQ(smp.sample(logits.data()), 7);
  logits[7] = -std::numeric_limits<float>::infinity();
  logits[12] = 9.0f;  // "12": refused, the best allowed is "ab"
  EXPECT_EQ(smp.sample(logits.data()), 6);
}

TEST(SamplerGrammar, RefusesAForeignTokenAndAMismatchedVocabulary) {
  auto g = Grammar::parse(R"(root ::= "a")");
  auto v = std::make_shared<const GrammarVocab>(toy_pieces(), std::vector<int32_t>{kToyEog});
  SamplerParams p;
  p.temperature = 0.0f;
  Sampler wrong(p, v->n_vocab() + 1);
  EXPECT_THROW(wrong.set_grammar({g, v}), Error);
  Sampler smp(p, v->n_vocab());
  smp.set_grammar({g, v});
  EXPECT_THROW(smp.accept_sampled(14), Error);  // "x"
  // A grammar nothing in the vocabulary can start: a clear error, not a token.
  smp.set_grammar({Grammar::parse(R"(root ::= "q")"), v});
  std::vector<float> logits(static_cast<size_t>(v->n_vocab()), 0.0f);
  EXPECT_THROW(smp.sample(logits.data()), Error);
}

}  // namespace
}  // namespace slm
