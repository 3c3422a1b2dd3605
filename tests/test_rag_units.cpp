// Units of the document index that the end-to-end tests cannot pin down: reST structure, chunk
// boundaries, the FTS5 query a user's words become, citation parsing, fusion and re-ranking.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <string>

#include "rag/answer.h"
#include "rag/chunker.h"
#include "rag/document.h"
#include "rag/search.h"
#include "rag/store_sqlite.h"

using namespace slm::rag;

namespace {

std::vector<std::string> heading_texts(const ParsedDocument& d) {
  std::vector<std::string> out;
  for (const Block& b : d.blocks)
    if (b.kind == Block::Kind::Heading) out.push_back(b.text + "@" + std::to_string(b.level));
  return out;
}

TEST(RagRst, TitlesObjectDirectivesAndLiteralBlocks) {
  const std::string rst =
      ":mod:`csv` --- CSV File Reading and Writing\n"
      "============================================\n"
      "\n"
      ".. module:: csv\n"
      "   :synopsis: Write and read tabular data to and from delimited files.\n"
      "\n"
      "The :mod:`csv` module implements *classes* to read and write tabular data.\n"
      "\n"
      "Module Contents\n"
      "---------------\n"
      "\n"
      ".. function:: reader(csvfile, dialect='excel', **fmtparams)\n"
      "\n"
      "   Return a reader object.  A short usage example::\n"
      "\n"
      "      >>> import csv\n"
      "      >>> spamreader = csv.reader(f)\n"
      "\n"
      "   Each row read is returned as a list of strings.\n"
      "\n"
      ".. index:: single: universal newlines; csv.reader function\n"
      "\n"
      "Text after the directive at the top level.\n";
  const ParsedDocument d = read_rst("csv.rst", rst);
  EXPECT_EQ(d.title, "csv --- CSV File Reading and Writing");
  const auto heads = heading_texts(d);
  ASSERT_EQ(heads.size(), 3u);
  EXPECT_EQ(heads[0], "csv --- CSV File Reading and Writing@1");
  EXPECT_EQ(heads[1], "Module Contents@2");
  EXPECT_EQ(heads[2], "reader(csvfile, dialect='excel', **fmtparams)@3");
  bool synopsis = false, code = false, row = false, index = false, tail = false;
  for (const Block& b : d.blocks) {
    if (b.text.find("Write and read tabular data") != std::string::npos) synopsis = true;
    if (b.kind == Block::Kind::Code && b.text.find(">>> spamreader = csv.reader(f)") != std::string::npos) code = true;
    if (b.text.find("Each row read is returned") != std::string::npos) row = true;
    if (b.text.find("universal newlines") != std::string::npos && b.text.find("single:") == std::string::npos) index = true;
    if (b.text == "Text after the directive at the top level.") tail = true;
    EXPECT_EQ(b.text.find(":mod:"), std::string::npos) << b.text;
  }
  EXPECT_TRUE(synopsis && code && row && index && tail);
}

TEST(RagRst, DirectiveAtTheEndOfTheFileTerminates) {
  // A directive with no body on the last line once looped forever (its body ended before it).
  const auto start = std::chrono::steady_clock::now();
  const ParsedDocument d = read_rst("x.rst", "Title\n=====\n\n.. note::");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_EQ(d.title, "Title");
}

ParsedDocument doc_of(std::initializer_list<std::pair<int, std::string>> parts) {
  ParsedDocument d;
  d.title = "Doc";
  int line = 1;
  for (const auto& [level, text] : parts) {
    Block b;
    b.kind = level > 0 ? Block::Kind::Heading : Block::Kind::Text;
    b.level = level;
    b.text = text;
    b.line_start = b.line_end = line++;
    d.blocks.push_back(b);
  }
  return d;
}

std::string words(int n, const std::string& w = "word") {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i ? " " : "") + w + ".";
  return s;
}

TEST(RagChunker, SectionsStartChunksAndSmallOnesShareThem) {
  ChunkOptions o;
  o.target_tokens = 40;
  o.overlap_tokens = 0;
  o.min_tokens = 10;
  o.count_tokens = [](std::string_view s) { return static_cast<int>(std::count(s.begin(), s.end(), ' ') + 1); };
  // A long section, then two tiny ones: the tiny ones share a chunk under their common parent,
  // and the next section starts a chunk of its own once that one holds min_tokens.
  const ParsedDocument d = doc_of({{1, "Doc"}, {2, "Big"}, {0, words(30)}, {3, "Tiny one"}, {0, "a b"}, {3, "Tiny two"},
                                   {0, words(12)}, {2, "Next"}, {0, words(12)}});
  const auto chunks = chunk_document(d, o);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].heading_path, "Doc > Big");
  EXPECT_EQ(chunks[1].heading_path, "Doc > Big");  // what "Tiny one" and "Tiny two" share
  EXPECT_EQ(chunks[1].text.rfind("Tiny one\n\na b\n\nTiny two\n\n", 0), 0u) << chunks[1].text;
  EXPECT_EQ(chunks[2].heading_path, "Doc > Next");
  EXPECT_EQ(chunks[2].text, words(12));
}

TEST(RagChunker, LongSectionsAreCutWithOverlapAndNothingIsLost) {
  ChunkOptions o;
  o.target_tokens = 20;
  o.overlap_tokens = 4;
  o.count_tokens = [](std::string_view s) { return static_cast<int>(std::count(s.begin(), s.end(), ' ') + 1); };
  std::string para;
  for (int i = 0; i < 30; ++i) para += "Sentence number " + std::to_string(i) + " here. ";
  const ParsedDocument d = doc_of({{1, "Doc"}, {0, para}});
  const auto chunks = chunk_document(d, o);
  ASSERT_GT(chunks.size(), 4u);
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_LE(chunks[i].n_tokens, o.target_tokens) << i;
    EXPECT_EQ(chunks[i].heading_path, "Doc");
  }
  for (int i = 0; i < 30; ++i) {
    const std::string s = "Sentence number " + std::to_string(i) + " here.";
    bool found = false;
    for (const auto& c : chunks) found |= c.text.find(s) != std::string::npos;
    EXPECT_TRUE(found) << s;
  }
  // The second chunk starts with the tail of the first.
  const std::string tail = chunks[0].text.substr(chunks[0].text.rfind("Sentence"));
  EXPECT_EQ(chunks[1].text.rfind(tail, 0), 0u) << chunks[1].text;
}

TEST(RagQuery, UserSyntaxNeverBecomesFts5Syntax) {
  EXPECT_EQ(fts_query("How do I copy a file?"), "\"copy\" OR \"file\"");
  EXPECT_EQ(fts_query("\"unbalanced -foo NEAR(a b) col:term * ^x"),
            "\"unbalanced\" OR \"foo\" OR \"near\" OR \"b\" OR \"col\" OR \"term\" OR \"x\"");
  EXPECT_EQ(fts_query("?!  ..."), "");
  // Only stop words: they are all there is to search for.
  EXPECT_EQ(fts_query("what is it"), "\"what\" OR \"is\" OR \"it\"");
  // One stem, one term.
  auto stem = [](const std::string& w) { return w.back() == 's' ? w.substr(0, w.size() - 1) : w; };
  EXPECT_EQ(fts_query("print prints", stem), "\"print\"");
}

TEST(RagAnswer, CitationsAreParsedOnceInOrder) {
  EXPECT_EQ(cited_numbers("Use csv.reader [2]. It returns rows [1][2], see [1, 3].", 3), (std::vector<int>{2, 1, 3}));
  EXPECT_EQ(cited_numbers("a[0] b[4] c[x] d[ 2 ] e[2", 3), (std::vector<int>{2}));
  EXPECT_TRUE(cited_numbers("no citations", 3).empty());
}

TEST(RagFusion, RrfSumsReciprocalRanksAndBreaksTiesByBestRank) {
  const auto f = rrf_fuse({{10, 20, 30}, {30, 10, 40}});
  ASSERT_EQ(f.size(), 4u);
  EXPECT_EQ(f[0].first, 10);  // 1/61 + 1/62
  EXPECT_NEAR(f[0].second, 1.0 / 61 + 1.0 / 62, 1e-15);
  EXPECT_EQ(f[1].first, 30);  // 1/63 + 1/61
  EXPECT_EQ(f[2].first, 20);  // 1/62, best rank 2
  EXPECT_EQ(f[3].first, 40);  // 1/63, best rank 3
}

TEST(RagFusion, PageEvidenceAndLeadBoostReorderLexicalHits) {
  // Chunk 1 (page 1) scores best alone; page 2 has three good chunks, one of them its lead.
  std::vector<Bm25Hit> hits = {{1, 1, 10.0, false}, {2, 2, 9.0, true}, {3, 2, 8.0, false}, {4, 2, 8.0, false}};
  const auto r = rank_lexical(hits, 0.5, 0.3);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].chunk_id, 2);  // 9 * 1.5 + 0.3 * 25/3
  EXPECT_NEAR(r[0].score, 13.5 + 2.5, 1e-12);
  EXPECT_EQ(r[1].chunk_id, 1);  // 10 + 0.3 * 10/3
  EXPECT_NEAR(r[1].score, 11.0, 1e-12);
  // Without the two signals the order is BM25's.
  const auto plain = rank_lexical(hits, 0.0, 0.0);
  EXPECT_EQ(plain[0].chunk_id, 1);
}

TEST(RagQuery, CommonWordsOnlyScoreRowsOfRareOnes) {
  const auto q = lexical_query({"file", "csv", "read"}, {9000, 40, 6000}, 5000);
  EXPECT_EQ(q.select, std::vector<std::string>{"csv"});
  EXPECT_EQ(q.words, (std::vector<std::string>{"file", "csv", "read"}));
  EXPECT_EQ(fts_match(q).first, "(\"csv\") AND (\"file\" OR \"csv\" OR \"read\")");
  EXPECT_EQ(fts_match(q).second, 1);
  EXPECT_EQ(fts_match(lexical_query({"file", "read"}, {9000, 6000}, 5000)).first, "\"file\" OR \"read\"");
  EXPECT_TRUE(lexical_query({"csv", "tsv"}, {40, 3}, 5000).select.empty());
  EXPECT_EQ(fts_match(lexical_query({"csv", "tsv"}, {40, 3}, 5000)).second, 0);
}

// Scores through the common-terms form equal the plain OR query's for the rows both return: the
// selecting phrases are not counted twice.
TEST(RagStore, SkippedPhrasesSelectRowsWithoutScoring) {
  const std::filesystem::path db =
      std::filesystem::temp_directory_path() / ("slm-units-" + std::to_string(std::random_device{}()) + ".db");
  {
    SqliteStore store(db.string(), true);
    std::mt19937 rng(3);
    for (int d = 0; d < 20; ++d) {
      DocumentInfo doc;
      doc.path = "/x/d" + std::to_string(d);
      doc.rel_path = "d" + std::to_string(d);
      doc.root = "/x";
      doc.hash = std::to_string(d);
      doc.title = "doc " + std::to_string(d);
      doc.format = "text";
      std::vector<Chunk> chunks;
      for (int c = 0; c < 5; ++c) {
        Chunk ch;
        ch.heading_path = doc.title;
        ch.text = "common words everywhere";
        if (rng() % 3 == 0) ch.text += " rare";
        if (rng() % 2 == 0) ch.text += " common again";
        chunks.push_back(ch);
      }
      store.put_document(doc, chunks);
    }
    const auto plain = store.bm25({{}, {"rare", "common"}}, 1000);
    const auto split = store.bm25({{"rare"}, {"rare", "common"}}, 1000);
    EXPECT_EQ(store.bm25_match("(\"rare\") AND (\"rare\" OR \"common\")", 1000, {}, 1).size(), split.size());
    std::map<int64_t, double> want;
    for (const auto& h : plain) want[h.chunk_id] = h.score;
    ASSERT_FALSE(split.empty());
    EXPECT_LT(split.size(), plain.size());
    for (const auto& h : split) {
      ASSERT_TRUE(want.count(h.chunk_id));
      EXPECT_NEAR(h.score, want[h.chunk_id], 1e-12) << h.chunk_id;
    }
  }
  std::filesystem::remove(db);
  std::filesystem::remove(db.string() + "-wal");
  std::filesystem::remove(db.string() + "-shm");
}

}  // namespace
