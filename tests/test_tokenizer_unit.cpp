// Tokenizer behaviour beyond the llama.cpp vectors: BOS handling, detokenization, streaming,
// special tokens and the errors for metadata slm does not understand.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "core/error.h"
#include "core/gguf.h"
#include "support/fixtures.h"
#include "tokenizer/tokenizer.h"

namespace {

using Ids = std::vector<int32_t>;

std::unique_ptr<slm::Tokenizer> load(const std::filesystem::path& p) {
  auto f = slm::GGUFFile::open(p.string());
  return slm::Tokenizer::from_gguf(*f);
}

// True when s is well-formed UTF-8 with no sequence cut short.
bool complete_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<uint8_t>(s[i]);
    size_t n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<uint8_t>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

TEST(TokenizerStories, EncodesWithBos) {
  SLM_REQUIRE_FIXTURE(path, "models/stories260K.gguf");
  auto tok = load(path);
  EXPECT_EQ(tok->n_vocab(), 512);
  EXPECT_EQ(tok->bos(), 1);
  EXPECT_EQ(tok->eos(), 2);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->encode("Once upon a time", true, false), (Ids{1, 403, 407, 261, 378}));
  EXPECT_EQ(tok->encode("Lily and Ben", true, false), (Ids{1, 317, 269, 368, 302}));
  EXPECT_EQ(tok->encode("The little dog", true, false), (Ids{1, 291, 376, 400, 428}));
  EXPECT_EQ(tok->encode("Once upon a time", false, false), (Ids{403, 407, 261, 378}));
  EXPECT_EQ(tok->encode("", true, false), (Ids{1}));
  EXPECT_EQ(tok->encode("", false, false), Ids{});
}

TEST(TokenizerStories, DetokenizationRoundTrips) {
  SLM_REQUIRE_FIXTURE(path, "models/stories260K.gguf");
  auto tok = load(path);
  for (const std::string text : {"Once upon a time", "Lily and Ben", "The little dog",
                                 "Hello world! 42 times\nnew line\ttab", "Zoë’s café 😀 日本"}) {
    const Ids ids = tok->encode(text, false, false);
    EXPECT_EQ(tok->decode(ids), text);
    std::string pieces;
    for (int32_t id : ids) pieces += tok->token_to_piece(id);
    EXPECT_EQ(pieces, " " + text) << "SentencePiece adds the dummy-prefix space";
  }
  // As llama_detokenize does, the one leading space is stripped from the first token only:
  // a BOS in front (which renders as nothing) uses up that strip.
  EXPECT_EQ(tok->decode(tok->encode("Once upon a time", true, false)), " Once upon a time");
  EXPECT_EQ(tok->decode({1}, /*render_special=*/true), "<s>");
  EXPECT_EQ(tok->token_to_piece(1), "");
  EXPECT_EQ(tok->token_to_piece(1, true), "<s>");
  EXPECT_EQ(tok->token_to_piece(13), "\n");  // <0x0A>
  EXPECT_EQ(tok->token_text(403), "\xE2\x96\x81Once");
  EXPECT_EQ(tok->token_to_piece(403), " Once");
  EXPECT_EQ(tok->find_token("\xE2\x96\x81Once"), 403);
  EXPECT_FALSE(tok->find_token("no such token").has_value());
  EXPECT_THROW(tok->token_to_piece(512), slm::Error);
  EXPECT_THROW(tok->token_to_piece(-1), slm::Error);
  EXPECT_TRUE(tok->is_eog(2));
  EXPECT_FALSE(tok->is_eog(403));
  EXPECT_TRUE(tok->is_control(1));
  EXPECT_FALSE(tok->is_control(403));
}

TEST(TokenizerStories, StreamDecoderNeverSplitsCharacters) {
  SLM_REQUIRE_FIXTURE(path, "models/stories260K.gguf");
  auto tok = load(path);
  // The 512-token vocabulary has no emoji or CJK pieces, so these arrive as byte tokens.
  const std::string text = "a😀b日本é";
  const Ids ids = tok->encode(text, true, false);
  int byte_tokens = 0;
  for (int32_t id : ids) byte_tokens += tok->token_text(id).rfind("<0x", 0) == 0;
  ASSERT_GE(byte_tokens, 4) << "the test needs a character split over byte tokens";

  slm::StreamDecoder dec(*tok);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string part = dec.push(id);
    EXPECT_TRUE(complete_utf8(part)) << "push() emitted an incomplete UTF-8 sequence";
    streamed += part;
  }
  streamed += dec.flush();
  EXPECT_EQ(streamed, " " + text);  // BOS renders as nothing; SPM's dummy prefix stays

  // A multi-byte character cut off at the end comes out of flush(), not push().
  slm::StreamDecoder cut(*tok);
  const auto f0 = tok->find_token("<0xF0>"), f1 = tok->find_token("<0x9F>");
  ASSERT_TRUE(f0 && f1);
  EXPECT_EQ(cut.push(*f0), "");
  EXPECT_EQ(cut.push(*f1), "");
  EXPECT_EQ(cut.flush(), "\xF0\x9F");
  EXPECT_EQ(cut.flush(), "");
}

TEST(TokenizerLlama3, SpecialTokensAndRoundTrip) {
  SLM_REQUIRE_FIXTURE(path, "fixtures/vocab/ggml-vocab-llama-bpe.gguf");
  auto tok = load(path);
  EXPECT_EQ(tok->bos(), 128000);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->encode("Hello", true, false), (Ids{128000, 9906}));
  EXPECT_EQ(tok->encode("<|begin_of_text|>Hello", false, true), (Ids{128000, 9906}));
  const Ids verbatim = tok->encode("<|begin_of_text|>Hello", false, false);
  EXPECT_EQ(std::count(verbatim.begin(), verbatim.end(), 128000), 0);
  EXPECT_EQ(tok->decode(verbatim), "<|begin_of_text|>Hello");
  EXPECT_EQ(tok->encode("a<|eot_id|>b", false, true), (Ids{64, 128009, 65}));

  EXPECT_TRUE(tok->is_eog(128001));  // <|end_of_text|>, the eos
  EXPECT_TRUE(tok->is_eog(128009));  // <|eot_id|>
  EXPECT_FALSE(tok->is_eog(128000));
  EXPECT_EQ(tok->eot(), 128009);  // llama.cpp: the first of <|eot_id|>, <|end_of_text|> in its map order
  EXPECT_EQ(tok->token_to_piece(128009), "");
  EXPECT_EQ(tok->token_to_piece(128009, true), "<|eot_id|>");

  const std::string text = "Привет, мир! 你好 🦙🦙 x=3.14159\n\n\tend";
  EXPECT_EQ(tok->decode(tok->encode(text, false, false)), text);
}

TEST(TokenizerQwen2, EogAndRoundTrip) {
  SLM_REQUIRE_FIXTURE(path, "fixtures/vocab/ggml-vocab-qwen2.gguf");
  auto tok = load(path);
  EXPECT_FALSE(tok->add_bos());
  EXPECT_EQ(tok->encode("Hello", true, false), (Ids{9707}));
  const auto im_end = tok->find_token("<|im_end|>");
  ASSERT_TRUE(im_end);
  EXPECT_TRUE(tok->is_eog(*im_end));
  EXPECT_TRUE(tok->is_eog(151643));  // <|endoftext|>
  EXPECT_EQ(tok->encode("<|im_start|>user", false, true).front(), 151644);
  // Qwen2 does not clean up spaces, so any text round-trips byte for byte.
  const std::string text = "x , y ' z 's — 🤖 ñ\r\n";
  EXPECT_EQ(tok->decode(tok->encode(text, false, false)), text);
}

TEST(TokenizerLlama3, ConcurrentEncodeAgrees) {
  SLM_REQUIRE_FIXTURE(path, "fixtures/vocab/ggml-vocab-llama-bpe.gguf");
  auto tok = load(path);
  const std::string text = "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～";
  const Ids want = tok->encode(text, false, false);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (tok->encode(text, false, false) != want) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

// A minimal vocabulary-only GGUF for the error paths.
std::filesystem::path write_vocab(const std::string& name, const std::string& model, const std::string& pre) {
  slm::GGUFWriter w;
  w.set("general.architecture", slm::GGUFValue::str("llama"));
  w.set("tokenizer.ggml.model", slm::GGUFValue::str(model));
  if (!pre.empty()) w.set("tokenizer.ggml.pre", slm::GGUFValue::str(pre));
  w.set("tokenizer.ggml.tokens", slm::GGUFValue::strings({"a", "b", "ab", "<s>"}));
  w.set("tokenizer.ggml.token_type", slm::GGUFValue::i32s({1, 1, 1, 3}));
  w.set("tokenizer.ggml.merges", slm::GGUFValue::strings({"a b"}));
  w.set("tokenizer.ggml.bos_token_id", slm::GGUFValue::u32(3));
  const auto path = std::filesystem::temp_directory_path() /
                    ("slm_test_tok_" + name + "_" + std::to_string(::getpid()) + ".gguf");
  w.write(path.string());
  return path;
}

std::string load_error(const std::filesystem::path& p) {
  try {
    load(p);
  } catch (const slm::Error& e) {
    return e.what();
  }
  return "";
}

TEST(TokenizerErrors, UnknownPreTokenizerIsNamed) {
  const auto p = write_vocab("pre", "gpt2", "mystery-pre-v9");
  const std::string err = load_error(p);
  std::filesystem::remove(p);
  EXPECT_NE(err.find("mystery-pre-v9"), std::string::npos) << err;
  EXPECT_NE(err.find("tokenizer.ggml.pre"), std::string::npos) << err;
}

TEST(TokenizerErrors, UnknownModelIsNamed) {
  const auto p = write_vocab("model", "sentencepiece-xl", "");
  const std::string err = load_error(p);
  std::filesystem::remove(p);
  EXPECT_NE(err.find("sentencepiece-xl"), std::string::npos) << err;
}

TEST(TokenizerErrors, MissingPreIsAnErrorNotAGuess) {
  const auto p = write_vocab("nopre", "gpt2", "");
  const std::string err = load_error(p);
  std::filesystem::remove(p);
  EXPECT_NE(err.find("tokenizer.ggml.pre"), std::string::npos) << err;
}

TEST(TokenizerErrors, TinyKnownVocabularyWorks) {
  // The same writer with a supported pre-tokenizer loads and merges "a b" -> "ab".
  const auto p = write_vocab("ok", "gpt2", "qwen2");
  auto tok = load(p);
  std::filesystem::remove(p);
  EXPECT_EQ(tok->encode("ab", false, false), (Ids{2}));
  EXPECT_EQ(tok->encode("ba", false, false), (Ids{1, 0}));
  EXPECT_EQ(tok->encode("<s>ab", false, true), (Ids{3, 2}));
  EXPECT_EQ(tok->decode({0, 1, 2}), "abab");
}

// A unigram ("t5") vocabulary: Viterbi picks the segmentation whose scores sum highest,
// characters no piece covers become one <unk> per run, whitespace is handled as the model says.
std::filesystem::path write_unigram(const std::string& name, bool remove_extra_ws, const std::string* charsmap) {
  slm::GGUFWriter w;
  w.set("general.architecture", slm::GGUFValue::str("llama"));
  w.set("tokenizer.ggml.model", slm::GGUFValue::str("t5"));
  //                                                0        1      2        3       4             5    6    7     8
  w.set("tokenizer.ggml.tokens", slm::GGUFValue::strings({"<pad>", "</s>", "<unk>", "<s>", "\xE2\x96\x81", "a", "b", "ab",
                                                          "\xE2\x96\x81" "a"}));
  w.set("tokenizer.ggml.scores", slm::GGUFValue::f32s({0, 0, 0, 0, -1.0f, -2.0f, -2.0f, -3.5f, -1.5f}));
  w.set("tokenizer.ggml.token_type", slm::GGUFValue::i32s({3, 3, 2, 3, 1, 1, 1, 1, 1}));
  w.set("tokenizer.ggml.bos_token_id", slm::GGUFValue::u32(3));
  w.set("tokenizer.ggml.eos_token_id", slm::GGUFValue::u32(1));
  w.set("tokenizer.ggml.unknown_token_id", slm::GGUFValue::u32(2));
  w.set("tokenizer.ggml.add_space_prefix", slm::GGUFValue::boolean(true));
  w.set("tokenizer.ggml.remove_extra_whitespaces", slm::GGUFValue::boolean(remove_extra_ws));
  w.set("tokenizer.ggml.add_bos_token", slm::GGUFValue::boolean(true));
  w.set("tokenizer.ggml.add_eos_token", slm::GGUFValue::boolean(false));
  if (charsmap) w.set("tokenizer.ggml.precompiled_charsmap", slm::GGUFValue::bytes(*charsmap));
  const auto path = std::filesystem::temp_directory_path() /
                    ("slm_test_tok_" + name + "_" + std::to_string(::getpid()) + ".gguf");
  w.write(path.string());
  return path;
}

TEST(TokenizerUnigram, ViterbiPicksTheBestSegmentation) {
  const auto p = write_unigram("ugm", /*remove_extra_ws=*/false, nullptr);
  auto tok = load(p);
  std::filesystem::remove(p);
  EXPECT_EQ(tok->model_type(), "t5");
  // "▁ab": ▁a + b = -3.5 beats ▁ + ab = -4.5 and ▁ + a + b = -5.
  EXPECT_EQ(tok->encode("ab", false, false), (Ids{8, 6}));
  // "▁abab": ▁a b a b (-7.5) loses to ▁a b ab? -1.5-2-3.5 = -7.0 wins.
  EXPECT_EQ(tok->encode("abab", false, false), (Ids{8, 6, 7}));
  // BOS from the file's add_bos_token, no EOS.
  EXPECT_EQ(tok->encode("a", true, false), (Ids{3, 8}));
  // A run of characters no piece covers is one <unk>; spaces kept (no merging) as ▁ pieces.
  EXPECT_EQ(tok->encode("a xyz\xC3\xA9 b", false, false), (Ids{8, 4, 2, 4, 6}));
  EXPECT_EQ(tok->encode("a  b", false, false), (Ids{8, 4, 4, 6}));
  EXPECT_EQ(tok->decode({8, 4, 4, 6}), "a  b");
}

TEST(TokenizerUnigram, RemoveExtraWhitespacesMergesRuns) {
  const auto p = write_unigram("ugm_ws", /*remove_extra_ws=*/true, nullptr);
  auto tok = load(p);
  std::filesystem::remove(p);
  EXPECT_EQ(tok->encode("  a   b  ", false, false), (Ids{8, 4, 6}));
  EXPECT_EQ(tok->encode("   ", false, false), (Ids{}));
}

TEST(TokenizerUnigram, MalformedCharsmapIsAnError) {
  const std::string short_map("\x10\x00\x00\x00\x01\x02", 6);  // claims 16 bytes of trie in 6
  const auto p = write_unigram("ugm_bad", false, &short_map);
  const std::string err = load_error(p);
  std::filesystem::remove(p);
  EXPECT_NE(err.find("precompiled_charsmap"), std::string::npos) << err;
}

}  // namespace
