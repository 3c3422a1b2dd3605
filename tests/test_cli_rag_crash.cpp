// Crash safety of `slm index add`: the process is killed (SIGKILL) at random moments while it
// indexes the Python docs corpus, early (before and during the first document's transaction),
// in the middle and late (during the last documents and the summary). After every kill the file
// must open (WAL recovery), pass PRAGMA integrity_check and `slm index stats --check`, hold no
// chunk without a document and no search row without a chunk, and every document in it must be
// complete (as many chunks as the uninterrupted reference run gave it). A run after the kills
// must then finish the job: the same documents and chunks as the reference, and the same search
// results.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/fixtures.h"
#include "support/run_cli.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using slm::test::RunResult;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A scratch directory removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("slm_rag_crash_" + std::to_string(getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Starts `slm args...` with its output going to `log`, and returns at once.
pid_t spawn_cli(const std::vector<std::string>& args, const fs::path& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  slm::test::CliArgv argv(args);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, SLM_CLI_PATH, &fa, nullptr, argv.get(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error(std::string("posix_spawn ") + SLM_CLI_PATH + ": " + std::strerror(rc));
  return pid;
}

int wait_status(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// Without reaping it.
bool still_running(pid_t pid) {
  siginfo_t info{};
  return waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == 0;
}

// ---- reading an index with the SQLite C API --------------------------------------------------

class Db {
 public:
  // Read-write, so that opening it runs WAL recovery as the next slm would.
  explicit Db(const fs::path& p) {
    if (sqlite3_open_v2(p.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      throw std::runtime_error("cannot open " + p.string() + ": " + msg);
    }
    sqlite3_busy_timeout(db_, 10000);
  }
  ~Db() { sqlite3_close(db_); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Every row of a query, each column as text.
  std::vector<std::vector<std::string>> rows(const std::string& sql) const {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK)
      throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
    std::vector<std::vector<std::string>> out;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        const auto* t = sqlite3_column_text(st, i);
        row.push_back(t ? reinterpret_cast<const char*>(t) : "");
      }
      out.push_back(std::move(row));
    }
    const std::string msg = sqlite3_errmsg(db_);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) throw std::runtime_error(sql + ": " + msg);
    return out;
  }
  int64_t count(const std::string& sql) const { return std::stoll(rows(sql).at(0).at(0)); }

 private:
  sqlite3* db_ = nullptr;
};

struct IndexContent {
  int64_t documents = 0, chunks = 0;
  std::map<std::string, int64_t> chunks_per_doc;  // rel_path -> chunks
};

IndexContent read_content(const Db& db) {
  IndexContent c;
  c.documents = db.count("SELECT count(*) FROM documents");
  c.chunks = db.count("SELECT count(*) FROM chunks");
  for (const auto& r : db.rows("SELECT d.rel_path, count(c.id) FROM documents d LEFT JOIN chunks c ON c.doc_id = d.id "
                               "GROUP BY d.id"))
    c.chunks_per_doc[r[0]] = std::stoll(r[1]);
  return c;
}

// Where a kill left the file.
enum class Phase { NoFile, NoSchema, NoDocument, Partial, Complete };
const char* phase_name(Phase p) {
  switch (p) {
    case Phase::NoFile: return "before the index file was created";
    case Phase::NoSchema: return "before the schema was committed";
    case Phase::NoDocument: return "before the first document was committed";
    case Phase::Partial: return "with part of the documents committed";
    case Phase::Complete: return "after the last document was committed";
  }
  return "?";
}

// The checks after a kill. Returns where the kill left the file; adds failures to the test.
Phase check_after_kill(const fs::path& db_path, const IndexContent& ref, const std::string& what) {
  if (!fs::exists(db_path)) return Phase::NoFile;
  Phase phase;
  {
    Db db(db_path);
    const auto integrity = db.rows("PRAGMA integrity_check");
    EXPECT_TRUE(integrity.size() == 1 && integrity[0][0] == "ok")
        << what << ": PRAGMA integrity_check says " << (integrity.empty() ? "nothing" : integrity[0][0]);
    if (db.count("SELECT count(*) FROM sqlite_master WHERE name = 'chunks'") == 0) {
      phase = Phase::NoSchema;
    } else {
      EXPECT_EQ(db.count("SELECT count(*) FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)"), 0)
          << what << ": chunks without a document";
      EXPECT_EQ(db.count("SELECT count(*) FROM chunks_fts WHERE rowid NOT IN (SELECT id FROM chunks)"), 0)
          << what << ": search rows without a chunk";
      EXPECT_EQ(db.count("SELECT count(*) FROM chunks WHERE id NOT IN (SELECT rowid FROM chunks_fts)"), 0)
          << what << ": chunks missing from the search index";
      // Each document is there whole or not at all.
      const IndexContent got = read_content(db);
      for (const auto& [path, n] : got.chunks_per_doc) {
        const auto it = ref.chunks_per_doc.find(path);
        if (it == ref.chunks_per_doc.end()) {
          ADD_FAILURE() << what << ": document " << path << " is not in the reference index";
          continue;
        }
        EXPECT_EQ(n, it->second) << what << ": document " << path << " has " << n << " chunks, the reference "
                                 << it->second;
      }
      phase = got.documents == 0 ? Phase::NoDocument
              : got.documents < ref.documents ? Phase::Partial
                                              : Phase::Complete;
    }
  }
  const RunResult st = slm::test::run_cli({"index", "stats", "--db", db_path.string(), "--check"}, 120);
  EXPECT_FALSE(st.timed_out) << what;
  EXPECT_EQ(st.signal, 0) << what;
  EXPECT_EQ(st.exit_code, 0) << what << ": slm index stats --check\n" << st.out << st.err;
  return phase;
}

std::string search_output(const fs::path& db, const std::string& query) {
  const RunResult r = slm::test::run_cli({"search", "--db", db.string(), "-k", "3", query}, 60);
  EXPECT_EQ(r.exit_code, 0) << "slm search " << query << "\n" << r.err;
  return r.out;
}

const std::vector<std::string> kQueries = {"how do I copy a file", "regular expression groups", "sort a list of tuples"};

TEST(CliRagCrash, KilledIndexRunsLeaveAConsistentIndexAndTheNextRunFinishes) {
  SLM_REQUIRE_FIXTURE(corpus_src, "rag/python-docs");
  const auto t_test = Clock::now();
  TempDir tmp;
  const fs::path corpus = tmp.path / "corpus";
  fs::copy(corpus_src, corpus, fs::copy_options::recursive);
  size_t n_files = 0;
  for (const auto& e : fs::recursive_directory_iterator(corpus)) n_files += e.is_regular_file();
  ASSERT_GE(n_files, 100u);

  // The reference: one uninterrupted run.
  const fs::path ref_db = tmp.path / "ref.db";
  auto t0 = Clock::now();
  const RunResult ref_run = slm::test::run_cli({"index", "add", "--db", ref_db.string(), corpus.string()}, 300);
  const double t_ref = seconds_since(t0);
  ASSERT_EQ(ref_run.exit_code, 0) << ref_run.out << ref_run.err;
  IndexContent ref;
  {
    Db db(ref_db);
    ref = read_content(db);
  }
  ASSERT_GT(ref.documents, 100);
  ASSERT_GT(ref.chunks, ref.documents);
  // A run over a complete index (every file read and hashed, nothing written): what a resumed
  // run costs before it reaches the files still to do.
  t0 = Clock::now();
  const RunResult noop = slm::test::run_cli({"index", "add", "--db", ref_db.string(), corpus.string()}, 300);
  const double t_noop = seconds_since(t0);
  ASSERT_EQ(noop.exit_code, 0) << noop.out << noop.err;
  std::map<std::string, std::string> ref_search;
  for (const std::string& q : kQueries) {
    ref_search[q] = search_output(ref_db, q);
    ASSERT_FALSE(ref_search[q].empty()) << q;
  }
  std::printf("corpus: %zu files; reference run: %lld documents, %lld chunks in %.2f s (a run with nothing to do: %.2f s)\n",
              n_files, static_cast<long long>(ref.documents), static_cast<long long>(ref.chunks), t_ref, t_noop);

  // The kills. Each series starts from a fresh file (so that early kills hit schema creation and
  // the first document's transaction) and goes on killing runs over the same file, each of which
  // resumes after the last.
  std::mt19937 rng(20240611);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  constexpr int kLandedWanted = 24, kMaxTries = 80, kKillsPerSeries = 4;
  int tries = 0, landed = 0, series = 0, in_series = kKillsPerSeries;
  double scale = 1.0;  // shrinks when kills come after the run has ended
  std::map<Phase, int> by_phase;
  double first_lo = 0, first_hi = std::max(0.02, 0.02 * t_ref);
  bool first_hi_seen = false;
  std::vector<fs::path> dbs;
  fs::path db;
  int64_t docs_done = 0;
  const fs::path log = tmp.path / "run.log";
  // Until enough kills have landed, one of them between the schema's commit and the first
  // document's (a few more fresh files are tried for that).
  while ((landed < kLandedWanted || (by_phase[Phase::NoDocument] == 0 && series < 12)) && tries < kMaxTries) {
    if (in_series == kKillsPerSeries || docs_done == ref.documents) {
      db = tmp.path / ("killed_" + std::to_string(series++) + ".db");
      dbs.push_back(db);
      in_series = 0;
      docs_done = 0;
    }
    ++tries;
    // When to kill. A fresh file's first run, every other file: some ms after the schema's
    // transaction reached the write-ahead log, between the latest such moment a kill found no
    // document yet and the earliest one that found a document (nearer the former), so that these
    // kills close in on the first document's transaction; on the other files, log-uniform from a
    // millisecond to a twentieth of the reference run (start-up, creating the file and the
    // schema). A resumed run, from what it has left to do: a fifth of the kills in its first
    // twentieth (log-uniform down to a millisecond: start-up, the files already indexed), the
    // rest anywhere up to its end.
    const double expected = t_noop + (t_ref - t_noop) * (1.0 - static_cast<double>(docs_done) / ref.documents);
    const bool first_of_series = in_series == 0, after_schema = first_of_series && series % 2 == 1;
    double delay;
    if (after_schema) {
      const double u = uni(rng);
      delay = first_lo + std::max(0.0, first_hi - first_lo) * u * u;
    } else if (first_of_series) {
      delay = std::exp(std::log(0.001) + uni(rng) * (std::log(std::max(0.002, 0.05 * t_ref)) - std::log(0.001)));
    } else if (uni(rng) < 0.2) {
      delay = expected * scale * std::exp(std::log(0.001) + uni(rng) * (std::log(0.05) - std::log(0.001)));
    } else {
      delay = expected * scale * (0.05 + 0.95 * uni(rng));
    }
    ++in_series;

    const auto t_spawn = Clock::now();
    const pid_t pid = spawn_cli({"index", "add", "--db", db.string(), corpus.string()}, log);
    if (after_schema) {
      // Until the schema's pages are in the write-ahead log (or the process is gone).
      const fs::path wal = db.string() + "-wal";
      std::error_code ec;
      while (!(fs::exists(wal, ec) && fs::file_size(wal, ec) > 0 && !ec) && still_running(pid) &&
             seconds_since(t_spawn) < 30)
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    kill(pid, SIGKILL);
    const int status = wait_status(pid);
    const bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    char when[64];
    std::snprintf(when, sizeof when, after_schema ? "%.1f ms after the schema's WAL frames" : "after %.1f ms", delay * 1000);
    const std::string what = "kill " + std::to_string(tries) + " (" + db.filename().string() + ", " + when + ")";
    if (!killed) {
      // It finished first: it must have finished well.
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
          << what << ": the run ended by itself with status " << status << "\n" << slm::test::read_text_file(log);
      scale *= 0.8;
    } else {
      ++landed;
    }
    const Phase phase = check_after_kill(db, ref, what);
    if (killed) by_phase[phase]++;
    if (after_schema) {
      if (killed && phase != Phase::Partial && phase != Phase::Complete) first_lo = std::max(first_lo, delay);
      if (!killed || phase == Phase::Partial || phase == Phase::Complete) {
        first_hi = std::min(first_hi, delay);
        first_hi_seen = true;
      }
      // No kill has found a document yet and they come close to the guess: guess later.
      if (!first_hi_seen && first_lo > 0.5 * first_hi) first_hi *= 2;
      if (first_hi <= first_lo) {  // timing noise: look around this delay again
        first_lo = 0.7 * delay;
        first_hi = 1.3 * delay + 0.001;
      }
    }
    if (fs::exists(db) && phase != Phase::NoSchema) {
      Db d(db);
      docs_done = d.count("SELECT count(*) FROM documents");
    }
    std::printf("  %-60s %s, %s (%lld documents)\n", what.c_str(), killed ? "killed mid-run" : "after it ended",
                phase_name(phase), static_cast<long long>(docs_done));
    if (::testing::Test::HasFailure()) break;
  }
  std::printf("%d kills landed while slm index add was running (of %d tries):\n", landed, tries);
  for (const auto& [phase, n] : by_phase) std::printf("  %3d %s\n", n, phase_name(phase));
  EXPECT_GE(landed, 20) << "too few kills landed mid-run";
  EXPECT_GE(by_phase[Phase::Partial], 5) << "too few kills landed in the middle of a run";
  EXPECT_GE(by_phase[Phase::NoSchema] + by_phase[Phase::NoDocument], 1)
      << "no kill landed while the schema or the first document was being written";

  // One more run over each killed file finishes the job: the reference's documents, chunks and
  // search results.
  for (const fs::path& p : dbs) {
    const RunResult fin = slm::test::run_cli({"index", "add", "--db", p.string(), corpus.string()}, 300);
    ASSERT_EQ(fin.exit_code, 0) << p << "\n" << fin.out << fin.err;
    IndexContent got;
    {
      Db d(p);
      got = read_content(d);
    }
    EXPECT_EQ(got.documents, ref.documents) << p;
    EXPECT_EQ(got.chunks, ref.chunks) << p;
    EXPECT_TRUE(got.chunks_per_doc == ref.chunks_per_doc) << p << ": documents or their chunks differ from the reference";
    for (const std::string& q : kQueries) EXPECT_EQ(search_output(p, q), ref_search[q]) << p << ", query: " << q;
    const RunResult st = slm::test::run_cli({"index", "stats", "--db", p.string(), "--check"}, 120);
    EXPECT_EQ(st.exit_code, 0) << st.out << st.err;
  }
  std::printf("%zu killed index files completed and checked; test took %.1f s\n", dbs.size(), seconds_since(t_test));
}

}  // namespace
