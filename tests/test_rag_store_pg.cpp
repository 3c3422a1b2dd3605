// The PostgreSQL index against a real server (support/postgres.h), and against the SQLite index
// as its reference: the same documents must rank the same way, score for score.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "rag/search.h"
#include "rag/store_pg.h"
#include "rag/store_sqlite.h"
#include "support/fixtures.h"
#include "support/postgres.h"
#include "support/run_cli.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using namespace slm::rag;

namespace {

slm::test::ProgramTempDir& temp() {
  static slm::test::ProgramTempDir t("rag-pg");
  return t;
}

// A schema per test, so that tests sharing a server never see each other's index.
std::string schema_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string s = std::string("t_") + info->name();
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s + "_" + std::to_string(::getpid());
}

DocumentInfo doc_named(const std::string& name, const std::string& title) {
  DocumentInfo d;
  d.path = "/docs/" + name;
  d.rel_path = name;
  d.root = "/docs";
  d.hash = "h-" + name;
  d.size = 100;
  d.mtime = 1700000000;
  d.title = title;
  d.format = "markdown";
  return d;
}

Chunk chunk_of(const std::string& heading, const std::string& text, int line) {
  Chunk c;
  c.heading_path = heading;
  c.text = text;
  c.line_start = line;
  c.line_end = line + 3;
  c.n_tokens = static_cast<int>(text.size() / 4);
  return c;
}

// A corpus with the shape that matters to BM25F: words of very different frequencies, chunks of
// different lengths, headings and titles that repeat some of the text's words.
void fill(Store& store, int docs, unsigned seed) {
  static const std::vector<std::string> vocab = {
      "file",   "read",    "write",  "csv",     "json",   "socket", "thread", "process", "copy",    "path",
      "string", "number",  "list",   "dict",    "class",  "module", "import", "error",   "raise",   "except",
      "format", "print",   "open",   "close",   "buffer", "stream", "bytes",  "encode",  "decode",  "unicode",
      "date",   "time",    "zone",   "regex",   "match",  "search", "sort",   "key",     "lambda",  "yield",
      "async",  "await",   "loop",   "event",   "queue",  "lock",   "pool",   "worker",  "signal",  "copying"};
  std::mt19937 rng(seed);
  // Zipf-like: word i drawn with weight 1/(i+1).
  std::vector<double> w;
  for (size_t i = 0; i < vocab.size(); ++i) w.push_back(1.0 / static_cast<double>(i + 1));
  std::discrete_distribution<size_t> pick(w.begin(), w.end());
  auto words = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += (i ? " " : "") + vocab[pick(rng)];
    return s;
  };
  for (int d = 0; d < docs; ++d) {
    const std::string title = words(2);
    DocumentInfo doc = doc_named("d" + std::to_string(d) + ".md", title);
    std::vector<Chunk> chunks;
    const int n = 1 + static_cast<int>(rng() % 6);
    for (int c = 0; c < n; ++c) {
      const std::string heading = c == 0 ? title : title + " > " + words(1 + static_cast<int>(rng() % 3));
      chunks.push_back(chunk_of(heading, words(5 + static_cast<int>(rng() % 120)) + ".", 1 + 10 * c));
    }
    store.put_document(doc, chunks);
  }
}

// A hit as both stores can name it: the document's path and the chunk's place in it.
std::string where(const Store& s, int64_t chunk_id) {
  const auto c = s.chunk(chunk_id);
  return c ? c->path + "#" + std::to_string(c->ord) : "?";
}

TEST(RagStorePg, RedactsThePasswordFromTheUrl) {
  EXPECT_EQ(redact_postgres_url("postgresql://slm:s3cret@db.internal:5433/docs"), "postgresql://slm@db.internal:5433/docs");
  EXPECT_EQ(redact_postgres_url("postgres://db/docs?password=s3cret&sslmode=require"), "postgres://db/docs?sslmode=require");
  EXPECT_EQ(redact_postgres_url("postgresql://db/docs?sslmode=require&password=x"), "postgresql://db/docs?sslmode=require");
  EXPECT_EQ(redact_postgres_url("postgresql://slm@db/docs"), "postgresql://slm@db/docs");
  EXPECT_TRUE(is_postgres_url("postgresql://x/y"));
  EXPECT_TRUE(is_postgres_url("postgres://x/y"));
  EXPECT_FALSE(is_postgres_url("/var/lib/postgres://x.db"));
  EXPECT_FALSE(is_postgres_url("index.db"));
}

TEST(RagStorePg, UnreachableServerSaysWhereAndHidesThePassword) {
  try {
    PgStore s("postgresql://slm:s3cret@/nodb?host=/nonexistent-socket-dir&connect_timeout=2", false);
    FAIL() << "opened";
  } catch (const slm::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cannot reach the PostgreSQL index postgresql://slm@/nodb"), std::string::npos) << m;
    EXPECT_EQ(m.find("s3cret"), std::string::npos) << m;
  }
}

TEST(RagStorePg, KeepsDocumentsChunksAndRootsAndCascadesRemoval) {
  SLM_REQUIRE_POSTGRES(pg);
  const std::string url = pg->url_for_schema(schema_name());
  try {
    PgStore s(url, false);
    FAIL() << "opened an index that is not there";
  } catch (const slm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no slm index at"), std::string::npos) << e.what();
  }
  int64_t id = 0;
  {
    PgStore s(url, true);
    EXPECT_STREQ(s.kind(), "postgresql");
    id = s.put_document(doc_named("guide.md", "Guide"),
                        {chunk_of("Guide", "How to copy a file.", 1), chunk_of("Guide > Sockets", "Open a socket, read bytes.", 9)});
    s.put_document(doc_named("other.md", "Other"), {chunk_of("Other", "Nothing \"quoted\" \\ here {a,b}.", 1)});
    s.add_root("/docs");
    s.add_root("/docs");
    EXPECT_EQ(s.check(), "ok");
  }
  PgStore s(url, false);
  const auto d = s.find_document("/docs/guide.md");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->id, id);
  EXPECT_EQ(d->title, "Guide");
  EXPECT_EQ(d->n_chunks, 2);
  EXPECT_EQ(s.documents().size(), 2u);
  EXPECT_EQ(s.roots(), std::vector<std::string>{"/docs"});
  EXPECT_EQ(s.chunk_count(), 3);
  // Terms as the SQLite index holds them (porter stems), with their chunk counts.
  EXPECT_EQ(s.document_frequency("copi"), 1);
  EXPECT_EQ(s.document_frequency("socket"), 1);
  EXPECT_EQ(s.document_frequency("guid"), 2);  // the title column of both of guide.md's chunks
  const auto hits = s.bm25({{}, {"socket"}}, 10);
  ASSERT_EQ(hits.size(), 1u);
  const auto c = s.chunk(hits[0].chunk_id);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->heading_path, "Guide > Sockets");
  EXPECT_EQ(c->line_start, 9);
  EXPECT_EQ(c->rel_path, "guide.md");
  const auto odd = s.bm25({{}, {"quoted"}}, 10);
  ASSERT_EQ(odd.size(), 1u);
  EXPECT_EQ(s.chunk(odd[0].chunk_id)->text, "Nothing \"quoted\" \\ here {a,b}.");
  // Putting a document again replaces it; removing it takes its chunks and search rows along.
  s.put_document(doc_named("guide.md", "Guide"), {chunk_of("Guide", "Only one chunk now.", 1)});
  EXPECT_EQ(s.chunk_count(), 2);
  EXPECT_TRUE(s.bm25({{}, {"socket"}}, 10).empty());
  s.set_mtime(s.find_document("/docs/guide.md")->id, 42);
  EXPECT_EQ(s.find_document("/docs/guide.md")->mtime, 42);
  s.remove_document(s.find_document("/docs/guide.md")->id);
  EXPECT_EQ(s.chunk_count(), 1);
  EXPECT_EQ(s.document_frequency("chunk"), 0);
  EXPECT_EQ(s.check(), "ok");
  const StoreStats st = s.stats();
  EXPECT_EQ(st.documents, 1);
  EXPECT_EQ(st.chunks, 1);
  EXPECT_GT(st.file_bytes, 0);
}

TEST(RagStorePg, KeepsVectorsPerModel) {
  SLM_REQUIRE_POSTGRES(pg);
  PgStore s(pg->url_for_schema(schema_name()), true);
  const EmbedModelInfo m = s.register_model("tiny", "fp-1", 4);
  EXPECT_EQ(s.register_model("tiny", "fp-1", 4).id, m.id);
  const std::vector<std::vector<float>> v = {{1, 0, 0, 0}, {0.5f, -0.25f, 1e-30f, 3}};
  s.put_document(doc_named("a.md", "A"), {chunk_of("A", "one", 1), chunk_of("A", "two", 5)}, &m, &v);
  const int64_t b = s.put_document(doc_named("b.md", "B"), {chunk_of("B", "three", 1)});
  EXPECT_EQ(s.find_model("fp-1")->n_vectors, 2);
  const auto missing = s.chunks_without_vectors(b, m.id);
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing[0].text, "three");
  s.put_vectors(m.id, {missing[0].id}, {{9, 8, 7, 6}});
  s.put_vectors(m.id, {missing[0].id}, {{1, 2, 3, 4}});  // again: replaced, not added
  std::vector<int64_t> ids;
  std::vector<float> matrix;
  s.load_vectors(m.id, ids, matrix);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  const std::vector<float> want = {1, 0, 0, 0, 0.5f, -0.25f, 1e-30f, 3, 1, 2, 3, 4};
  EXPECT_EQ(matrix, want);
  EXPECT_THROW(s.put_document(doc_named("c.md", "C"), {chunk_of("C", "x", 1)}, &m, &v), slm::Error);  // 2 vectors, 1 chunk
  EXPECT_EQ(s.models().size(), 1u);
  EXPECT_EQ(s.check(), "ok");
}

TEST(RagStorePg, RefusesANewerSchemaAndAnotherProgramsTables) {
  SLM_REQUIRE_POSTGRES(pg);
  const std::string schema = schema_name();
  const std::string url = pg->url_for_schema(schema);
  { PgStore s(url, true); }
  ASSERT_TRUE(pg->sql("UPDATE " + schema + ".slm_meta SET value = '99' WHERE key = 'schema_version'"));
  try {
    PgStore s(url, false);
    FAIL() << "opened a newer schema";
  } catch (const slm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 99, from a newer slm"), std::string::npos) << e.what();
  }
  const std::string other = pg->url_for_schema(schema + "_o");
  ASSERT_TRUE(pg->sql("CREATE TABLE " + schema + "_o.slm_meta(key text, value text); INSERT INTO " + schema +
                      "_o.slm_meta VALUES ('application', 'billing')"));
  try {
    PgStore s(other, true);
    FAIL() << "took over another program's slm_meta";
  } catch (const slm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not an slm index's (application 'billing')"), std::string::npos) << e.what();
  }
}

// The reference: the SQLite index. Same documents, same queries: same chunks in the same order,
// the same scores up to the order of one floating-point sum.
TEST(RagStorePg, RanksAsTheSqliteIndexDoes) {
  SLM_REQUIRE_POSTGRES(pg);
  const std::string db = (temp().path() / "ref.db").string();
  fs::remove(db);
  SqliteStore ref(db, true);
  PgStore s(pg->url_for_schema(schema_name()), true);
  fill(ref, 300, 11);
  fill(s, 300, 11);
  ASSERT_EQ(ref.chunk_count(), s.chunk_count());
  for (const std::string t : {"file", "copi", "socket", "lock", "nowhere"}) EXPECT_EQ(ref.document_frequency(t), s.document_frequency(t)) << t;
  const std::vector<LexicalQuery> queries = {
      {{}, {"file"}},
      {{}, {"copying", "files"}},
      {{}, {"socket", "read", "bytes"}},
      {{"signal", "worker"}, {"file", "signal", "worker", "read"}},  // common words only score rows of rare ones
      {{}, {"unicode", "decode", "error"}},
      {{}, {"zone"}},
      {{}, {"nowhere"}},
  };
  Bm25Params other;
  other.k1 = 0.9;
  other.text_b = 0.8;
  other.title_weight = 3.0;
  other.lead_boost = 0.0;
  int compared = 0;
  for (const Bm25Params& p : {Bm25Params{}, other})
    for (const LexicalQuery& q : queries)
      for (int limit : {5, 100000}) {
        const auto a = ref.bm25(q, limit, p), b = s.bm25(q, limit, p);
        ASSERT_EQ(a.size(), b.size()) << q.words[0] << " limit " << limit;
        for (size_t i = 0; i < a.size(); ++i) {
          EXPECT_NEAR(a[i].score, b[i].score, 1e-12 * std::max(1.0, std::abs(a[i].score))) << q.words[0] << " #" << i;
          EXPECT_EQ(a[i].lead, b[i].lead);
          // Exact ties may come in another order; scores that differ must not.
          if (i + 1 < a.size() && a[i].score * (1 + p.lead_boost * a[i].lead) != a[i + 1].score * (1 + p.lead_boost * a[i + 1].lead)) {
            EXPECT_EQ(where(ref, a[i].chunk_id), where(s, b[i].chunk_id)) << q.words[0] << " #" << i;
          }
          ++compared;
        }
      }
  EXPECT_GT(compared, 500);
  // And through the searcher: page evidence and the common-terms split on top.
  Searcher sa(ref, nullptr), sb(s, nullptr);
  SearchOptions so;
  so.k = 10;
  so.common_rows = 60;
  for (const std::string q : {"how do I copy a file", "socket read bytes", "unicode decode error in a stream", "lock pool worker"}) {
    const auto a = sa.search(q, so), b = sb.search(q, so);
    ASSERT_EQ(a.size(), b.size()) << q;
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].chunk.path + "#" + std::to_string(a[i].chunk.ord), b[i].chunk.path + "#" + std::to_string(b[i].chunk.ord)) << q;
      EXPECT_NEAR(a[i].score, b[i].score, 1e-9) << q;
      EXPECT_EQ(a[i].snippet, b[i].snippet) << q;
    }
  }
}

// Two machines' indexers at once, into one index: one of them replacing the same files.
TEST(RagStorePg, TwoWritersLeaveAConsistentIndex) {
  SLM_REQUIRE_POSTGRES(pg);
  const std::string url = pg->url_for_schema(schema_name());
  { PgStore s(url, true); }
  auto writer = [&](int who) {
    PgStore s(url, false);
    for (int i = 0; i < 40; ++i) {
      const std::string name = (i % 2 ? "shared" : "own" + std::to_string(who)) + std::to_string(i) + ".md";
      s.put_document(doc_named(name, "T"), {chunk_of("T", "writer " + std::to_string(who) + " copy " + std::to_string(i), 1),
                                            chunk_of("T > x", "more text for the same file", 4)});
    }
  };
  std::thread a(writer, 1), b(writer, 2);
  a.join();
  b.join();
  PgStore s(url, false);
  EXPECT_EQ(s.documents().size(), 20u + 20u + 20u);  // own1*, own2*, shared* once each
  EXPECT_EQ(s.chunk_count(), 120);
  EXPECT_EQ(s.check(), "ok");
}

// What a user runs: `slm index add` and `slm eval-retrieval` on the Python docs, once into an
// SQLite file and once into PostgreSQL, must give the same figures and the same answers.
TEST(RagStorePg, CliIndexesAndSearchesThePythonDocsAsWithSqlite) {
  SLM_REQUIRE_POSTGRES(pg);
  SLM_REQUIRE_FIXTURE(docs, "rag/python-docs");
  SLM_REQUIRE_FIXTURE(queries, "rag/python-faq.public.jsonl");
  const std::string db = (temp().path() / "py.db").string();
  const std::string url = pg->url_for_schema(schema_name());
  for (const std::string& where : {db, url}) {
    const auto r = slm::test::run_cli({"index", "add", "-q", "--db", where, docs.string()}, 600);
    ASSERT_EQ(r.exit_code, 0) << where << "\n" << r.err;
  }
  const auto st = slm::test::run_cli({"index", "stats", "--db", url, "--check"}, 120);
  ASSERT_EQ(st.exit_code, 0) << st.err;
  EXPECT_NE(st.out.find("(postgresql,"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("ok"), std::string::npos) << st.out;
  std::string figures[2];
  for (int i = 0; i < 2; ++i) {
    const auto r = slm::test::run_cli({"eval-retrieval", "--db", i ? url : db, "--queries", queries.string(), "--mode", "bm25"}, 300);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    figures[i] = r.out.substr(r.out.find("recall@"));
  }
  std::cout << figures[1];
  EXPECT_EQ(figures[0], figures[1]);
  for (const std::string q : {"How do I read a CSV file?", "copying files and folders", "what is a lambda"}) {
    const auto a = slm::test::run_cli({"search", "--db", db, "--json", "-k", "5", q}, 120);
    const auto b = slm::test::run_cli({"search", "--db", url, "--json", "-k", "5", q}, 120);
    ASSERT_EQ(a.exit_code, 0) << a.err;
    ASSERT_EQ(b.exit_code, 0) << b.err;
    auto ja = nlohmann::json::parse(a.out), jb = nlohmann::json::parse(b.out);
    ASSERT_EQ(ja.size(), jb.size()) << q;
    for (size_t i = 0; i < ja.size(); ++i) {
      EXPECT_EQ(ja[i]["path"], jb[i]["path"]) << q;
      EXPECT_EQ(ja[i]["lines"], jb[i]["lines"]) << q;
      EXPECT_NEAR(ja[i]["score"].get<double>(), jb[i]["score"].get<double>(), 1e-9) << q;
    }
  }
  // A URL that names no index: the message says how to make one.
  const auto none = slm::test::run_cli({"search", "--db", pg->url_for_schema(schema_name() + "_none"), "csv"}, 60);
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("no slm index at postgresql://"), std::string::npos) << none.err;
  EXPECT_NE(none.err.find("slm index add --db"), std::string::npos) << none.err;
}

// `slm index copy`: an SQLite index with vectors into PostgreSQL and back, nothing read or
// embedded again, the same answers from all three; a second copy changes nothing.
TEST(RagStorePg, CliCopiesAnIndexWithItsVectorsBothWays) {
  SLM_REQUIRE_POSTGRES(pg);
  SLM_REQUIRE_FIXTURE(embed, "fixtures/embeddings/bert-L2-E64-mean-F32.gguf");
  const fs::path dir = temp().path() / "copy";
  fs::create_directories(dir / "notes");
  const std::vector<std::string> topics = {"bread baking", "coffee brewing", "csv files in python", "bicycle tyres"};
  for (size_t i = 0; i < topics.size(); ++i) {
    std::ofstream f(dir / "notes" / ("n" + std::to_string(i) + ".md"));
    f << "# About " << topics[i] << "\n\nThis note is about " << topics[i] << ".\n\n## Details\n\nMore on " << topics[i]
      << ", step by step.\n";
  }
  const std::string a = (dir / "a.db").string(), b = (dir / "b.db").string();
  const std::string url = pg->url_for_schema(schema_name());
  auto cli = [](std::vector<std::string> args) {
    const auto r = slm::test::run_cli(args, 120);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  cli({"index", "add", "-q", "--db", a, "--embed-model", embed.string(), (dir / "notes").string()});
  EXPECT_NE(cli({"index", "copy", "--db", a, "--to", url}).find("copied 4 documents (4 chunks, 4 vectors)"), std::string::npos);
  EXPECT_NE(cli({"index", "copy", "--db", a, "--to", url}).find("copied 0 documents (0 chunks, 0 vectors)"), std::string::npos);
  EXPECT_NE(cli({"index", "copy", "--db", url, "--to", b}).find("copied 4 documents (4 chunks, 4 vectors)"), std::string::npos);
  for (const std::string& db : {url, b}) {
    const auto st = nlohmann::json::parse(cli({"index", "stats", "--db", db, "--json", "--check"}));
    EXPECT_EQ(st["documents"], 4);
    EXPECT_EQ(st["chunks"], 4);
    EXPECT_EQ(st["models"][0]["vectors"], 4);
    EXPECT_EQ(st["roots"][0], fs::weakly_canonical(dir / "notes").string());
    EXPECT_EQ(st["integrity"], "ok");
  }
  const std::string want = cli({"search", "--db", a, "--embed-model", embed.string(), "--mode", "hybrid", "--json", "-k", "4", "coffee"});
  for (const std::string& db : {url, b}) {
    const auto got = nlohmann::json::parse(cli({"search", "--db", db, "--embed-model", embed.string(), "--mode", "hybrid", "--json", "-k", "4", "coffee"}));
    const auto ref = nlohmann::json::parse(want);
    ASSERT_EQ(got.size(), ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_EQ(got[i]["path"], ref[i]["path"]) << db;
      EXPECT_EQ(got[i]["vector_rank"], ref[i]["vector_rank"]) << db;
      EXPECT_NEAR(got[i]["score"].get<double>(), ref[i]["score"].get<double>(), 1e-12) << db;
    }
  }
  // The copied index syncs like the original: a new note in the folder is picked up.
  {
    std::ofstream f(dir / "notes" / "n9.md");
    f << "# Sourdough\n\nStarters need feeding.\n";
  }
  cli({"index", "sync", "-q", "--db", url, "--embed-model", embed.string()});
  const auto hit = nlohmann::json::parse(cli({"search", "--db", url, "--json", "-k", "1", "sourdough starters"}));
  ASSERT_EQ(hit.size(), 1u);
  EXPECT_EQ(hit[0]["path"], "n9.md");
  // Onto itself, or from nothing: said, not done.
  const auto self = slm::test::run_cli({"index", "copy", "--db", a, "--to", a}, 60);
  EXPECT_EQ(self.exit_code, 1);
  EXPECT_NE(self.err.find("onto itself"), std::string::npos) << self.err;
  const auto none = slm::test::run_cli({"index", "copy", "--db", (dir / "none.db").string(), "--to", b}, 60);
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("no index at"), std::string::npos) << none.err;
}

}  // namespace
