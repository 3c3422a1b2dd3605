// Bad input to `slm index add` and `slm search`: files that cannot be read or are not what their
// names say (no read permission, a link to a missing file, a named pipe, binary bytes or invalid
// UTF-8 in a .txt, a damaged PDF), folders with nothing to index, queries made of punctuation or
// of FTS5 syntax, and --db files that are not an slm index (text, another program's SQLite
// database, an index from a newer slm, a damaged index, a missing path). Each must end with a
// clear message on stderr that names the file and says what is wrong, and the right exit status:
// never a signal, never a hang, never a raw SQL or FTS error, never a sanitizer report.
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "rag/store.h"
#include "support/fixtures.h"
#include "support/run_cli.h"

namespace {

namespace fs = std::filesystem;
using slm::test::RunResult;

// A scratch directory per test, removed at its end.
struct TempDir {
  fs::path path;
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = fs::temp_directory_path() /
           ("slm_rag_bad_input_" + std::to_string(getpid()) + "_" + (info ? info->name() : "x"));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    // A chmod 000 file or folder inside must not stop the removal.
    for (auto it = fs::recursive_directory_iterator(path, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
      fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
  }
};

void write_file(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + p.string());
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}
bool has(const std::string& hay, const std::string& needle) { return lower(hay).find(lower(needle)) != std::string::npos; }
// True when `hay` contains any of the words.
bool has_any(const std::string& hay, const std::vector<std::string>& needles) {
  return std::any_of(needles.begin(), needles.end(), [&](const std::string& n) { return has(hay, n); });
}

RunResult slm_run(const std::vector<std::string>& args) {
  const RunResult r = slm::test::run_cli(args, 120);
  std::string cmd = "slm";
  for (const auto& a : args) cmd += " " + a;
  // The basics for every command here: it ended by itself, not by a signal, and no sanitizer,
  // SQL or FTS error text reached the user.
  EXPECT_FALSE(r.timed_out) << cmd << ": hung";
  EXPECT_EQ(r.signal, 0) << cmd << ": killed by signal " << r.signal << "\n" << r.err;
  EXPECT_FALSE(has_any(r.err, {"Sanitizer", "runtime error:"})) << cmd << "\n" << r.err;
  EXPECT_FALSE(has_any(r.err, {"syntax error", "fts5", "SQLite error", "preparing SQL", "no such column",
                               "no such table", "malformed MATCH", "unrecognized token"}))
      << cmd << ": a raw SQL/FTS error reached the user\n" << r.err;
  return r;
}

// `slm: error: ...` lines (the command's failure) on stderr.
bool has_error_line(const std::string& err) { return err.find("slm: error: ") != std::string::npos; }

// The line of stderr that names `name` (empty when none does).
std::string line_naming(const std::string& err, const std::string& name) {
  size_t start = 0;
  while (start < err.size()) {
    size_t end = err.find('\n', start);
    if (end == std::string::npos) end = err.size();
    const std::string line = err.substr(start, end - start);
    if (line.find(name) != std::string::npos) return line;
    start = end + 1;
  }
  return {};
}

std::vector<std::string> indexed_paths(const fs::path& db) {
  const RunResult r = slm_run({"index", "list", "--db", db.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> out;
  size_t start = 0;
  while (start < r.out.size()) {
    size_t end = r.out.find('\n', start);
    if (end == std::string::npos) end = r.out.size();
    const std::string line = r.out.substr(start, end - start);
    if (!line.empty()) out.push_back(line.substr(0, line.find('\t')));
    start = end + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

const std::string kGoodText =
    "Penguins of the southern ocean\n\nPenguins are flightless birds that live almost exclusively in the "
    "southern hemisphere. They swim with their wings and eat krill, fish and squid.\n";
const std::string kGoodMarkdown =
    "# Lighthouses\n\nA lighthouse is a tower with a lamp that guides ships along dangerous coasts at night.\n";

std::string binary_bytes() {
  std::string s;
  for (int rep = 0; rep < 4; ++rep)
    for (int i = 0; i < 256; ++i) s += static_cast<char>(i);
  return s;
}
std::string invalid_utf8() {
  std::string s;
  for (int i = 0; i < 20; ++i) s += "some words of text \xff\xfe and caf\xe9 and \xc3\x28 more words\n";
  return s;
}

// ---- PDF: a minimal valid file, written by hand -------------------------------------------

std::string make_pdf(const std::string& text) {
  const std::string content = "BT /F1 12 Tf 72 720 Td (" + text + ") Tj ET\n";
  const std::vector<std::string> objects = {
      "<< /Type /Catalog /Pages 2 0 R >>",
      "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
      "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
      "<< /Length " + std::to_string(content.size()) + " >>\nstream\n" + content + "endstream",
      "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
  };
  std::string pdf = "%PDF-1.4\n";
  std::vector<size_t> offsets;
  for (size_t i = 0; i < objects.size(); ++i) {
    offsets.push_back(pdf.size());
    pdf += std::to_string(i + 1) + " 0 obj\n" + objects[i] + "\nendobj\n";
  }
  const size_t xref = pdf.size();
  pdf += "xref\n0 " + std::to_string(objects.size() + 1) + "\n0000000000 65535 f \n";
  for (size_t off : offsets) {
    char line[32];
    std::snprintf(line, sizeof line, "%010zu 00000 n \n", off);
    pdf += line;
  }
  pdf += "trailer\n<< /Size " + std::to_string(objects.size() + 1) + " /Root 1 0 R >>\nstartxref\n" +
         std::to_string(xref) + "\n%%EOF\n";
  return pdf;
}

// ---- SQLite files made here ---------------------------------------------------------------

void sql_exec(const fs::path& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr), SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  const std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << sql << ": " << msg;
}

int64_t sql_int(const fs::path& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    throw std::runtime_error("cannot open " + db_path.string());
  }
  sqlite3_stmt* st = nullptr;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

// A small good index: two documents.
fs::path make_index(const TempDir& tmp) {
  write_file(tmp.path / "docs" / "penguins.txt", kGoodText);
  write_file(tmp.path / "docs" / "lighthouses.md", kGoodMarkdown);
  const fs::path db = tmp.path / "good.db";
  const RunResult r = slm_run({"index", "add", "--db", db.string(), (tmp.path / "docs").string()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  return db;
}

// ---- files that cannot be indexed -----------------------------------------------------------

TEST(CliRagBadInput, FileWithoutReadPermission) {
  TempDir tmp;
  const fs::path dir = tmp.path / "docs";
  write_file(dir / "good.txt", kGoodText);
  write_file(dir / "secret.txt", kGoodMarkdown);
  fs::permissions(dir / "secret.txt", fs::perms::none);
  // Root (or CAP_DAC_OVERRIDE) reads it anyway: there is no unreadable file to test then.
  const int fd = ::open((dir / "secret.txt").c_str(), O_RDONLY);
  if (fd >= 0) {
    ::close(fd);
    std::cerr << "\n*** SKIPPING the unreadable-file case: this user can read a chmod 000 file (root?); the dangling "
                 "link and named pipe cases cover files that cannot be opened ***\n";
    GTEST_SKIP() << "running with permission to read a chmod 000 file";
  }
  const fs::path db = tmp.path / "x.db";
  RunResult r = slm_run({"index", "add", "--db", db.string(), dir.string()});
  EXPECT_EQ(r.exit_code, 0) << "one file could be indexed\n" << r.err;
  const std::string line = line_naming(r.err, "secret.txt");
  EXPECT_TRUE(has(line, "skipped") && has_any(line, {"permission", "cannot open", "cannot read"})) << r.err;
  EXPECT_EQ(indexed_paths(db), std::vector<std::string>{"good.txt"});
  // The file alone: nothing indexed, status 1.
  r = slm_run({"index", "add", "--db", (tmp.path / "y.db").string(), (dir / "secret.txt").string()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(has_any(line_naming(r.err, "secret.txt"), {"permission", "cannot open"})) << r.err;
  EXPECT_TRUE(has_error_line(r.err)) << r.err;
}

TEST(CliRagBadInput, DanglingLinkNamedPipeAndFolderNamedTxt) {
  TempDir tmp;
  const fs::path dir = tmp.path / "docs";
  write_file(dir / "good.txt", kGoodText);
  fs::create_symlink(tmp.path / "does-not-exist.txt", dir / "dangling.txt");
  ASSERT_EQ(::mkfifo((dir / "pipe.txt").c_str(), 0644), 0);  // opening it would block: must not be opened
  fs::create_directories(dir / "folder.txt");
  write_file(dir / "folder.txt" / "inner.md", kGoodMarkdown);
  const fs::path db = tmp.path / "x.db";
  RunResult r = slm_run({"index", "add", "--db", db.string(), dir.string()});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(has_any(line_naming(r.err, "dangling.txt"), {"missing", "link"})) << r.err;
  EXPECT_TRUE(has(line_naming(r.err, "pipe.txt"), "not a regular file")) << r.err;
  EXPECT_EQ(indexed_paths(db), (std::vector<std::string>{"folder.txt/inner.md", "good.txt"}));

  // Each given alone.
  r = slm_run({"index", "add", "--db", (tmp.path / "a.db").string(), (dir / "dangling.txt").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has_error_line(r.err) && has(line_naming(r.err, "dangling.txt"), "no such file")) << r.err;
  r = slm_run({"index", "add", "--db", (tmp.path / "b.db").string(), (dir / "pipe.txt").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has_error_line(r.err) && has(line_naming(r.err, "pipe.txt"), "not a file")) << r.err;
  fs::create_directories(tmp.path / "empty.txt");
  r = slm_run({"index", "add", "--db", (tmp.path / "c.db").string(), (tmp.path / "empty.txt").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(has_error_line(r.err) && has(line_naming(r.err, "empty.txt"), "no files to index")) << r.err;
}

TEST(CliRagBadInput, BinaryFileNamedTxt) {
  TempDir tmp;
  write_file(tmp.path / "blob.txt", binary_bytes());
  const RunResult r = slm_run({"index", "add", "--db", (tmp.path / "x.db").string(), (tmp.path / "blob.txt").string()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(has(line_naming(r.err, "blob.txt"), "binary")) << r.err;
  EXPECT_TRUE(has_error_line(r.err)) << r.err;
}

TEST(CliRagBadInput, InvalidUtf8Txt) {
  TempDir tmp;
  write_file(tmp.path / "latin1.txt", invalid_utf8());
  const RunResult r = slm_run({"index", "add", "--db", (tmp.path / "x.db").string(), (tmp.path / "latin1.txt").string()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(has(line_naming(r.err, "latin1.txt"), "UTF-8")) << r.err;
  EXPECT_TRUE(has_error_line(r.err)) << r.err;
}

TEST(CliRagBadInput, DamagedPdf) {
  TempDir tmp;
  const std::string good = make_pdf("Volcanoes erupt molten rock called lava");
  write_file(tmp.path / "good.pdf", good);
  RunResult r = slm_run({"index", "add", "--db", (tmp.path / "good.db").string(), (tmp.path / "good.pdf").string()});
  ASSERT_EQ(r.exit_code, 0) << "the undamaged PDF must index\n" << r.out << r.err;

  std::string garbage = "%PDF-1.7\n";
  for (int i = 0; i < 2000; ++i) garbage += static_cast<char>((i * 7919 + 13) % 256);
  write_file(tmp.path / "garbage.pdf", garbage);
  r = slm_run({"index", "add", "--db", (tmp.path / "g.db").string(), (tmp.path / "garbage.pdf").string()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(has(line_naming(r.err, "garbage.pdf"), "PDF")) << r.err;

  // Cut at many points: each is indexed (what a reader recovers) or skipped with a reason; the
  // shortest cuts hold no page at all.
  int skipped = 0;
  for (size_t cut : {size_t{5}, size_t{9}, size_t{30}, good.size() / 4, good.size() / 2, good.size() * 3 / 4,
                     good.size() - 30, good.size() - 8}) {
    const std::string name = "cut" + std::to_string(cut) + ".pdf";
    write_file(tmp.path / name, good.substr(0, cut));
    r = slm_run({"index", "add", "--db", (tmp.path / (name + ".db")).string(), (tmp.path / name).string()});
    EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 1) << name << ": status " << r.exit_code << "\n" << r.err;
    if (r.exit_code == 1) {
      ++skipped;
      const std::string line = line_naming(r.err, name);
      EXPECT_TRUE(has(line, "skipped") && has_any(line, {"PDF", "no text"})) << name << "\n" << r.err;
    }
  }
  EXPECT_GE(skipped, 3) << "PDFs cut to a few bytes must be skipped";
}

TEST(CliRagBadInput, FolderWithGoodAndBadFilesIndexesTheGoodOnes) {
  TempDir tmp;
  const fs::path dir = tmp.path / "docs";
  write_file(dir / "penguins.txt", kGoodText);
  write_file(dir / "guide" / "lighthouses.md", kGoodMarkdown);
  write_file(dir / "blob.txt", binary_bytes());
  write_file(dir / "latin1.txt", invalid_utf8());
  write_file(dir / "broken.pdf", "%PDF-1.4\nnot really a PDF at all\n");
  write_file(dir / "notes.docx", "PK\x03\x04 not a format the index reads");
  const fs::path db = tmp.path / "x.db";
  const RunResult r = slm_run({"index", "add", "--db", db.string(), dir.string()});
  EXPECT_EQ(r.exit_code, 0) << "good files were indexed: the run succeeded\n" << r.out << r.err;
  EXPECT_FALSE(has_error_line(r.err)) << r.err;
  EXPECT_TRUE(has(line_naming(r.err, "blob.txt"), "binary")) << r.err;
  EXPECT_TRUE(has(line_naming(r.err, "latin1.txt"), "UTF-8")) << r.err;
  EXPECT_TRUE(has(line_naming(r.err, "broken.pdf"), "PDF")) << r.err;
  EXPECT_TRUE(has_any(line_naming(r.err, "notes.docx"), {"format", "not supported", "unsupported"})) << r.err;
  for (const char* name : {"blob.txt", "latin1.txt", "broken.pdf", "notes.docx"})
    EXPECT_TRUE(has(line_naming(r.err, name), "skipped")) << name << "\n" << r.err;
  EXPECT_EQ(indexed_paths(db), (std::vector<std::string>{"guide/lighthouses.md", "penguins.txt"}));
  const RunResult st = slm_run({"index", "stats", "--db", db.string(), "--check"});
  EXPECT_EQ(st.exit_code, 0) << st.out << st.err;
}

TEST(CliRagBadInput, FolderOfOnlyBadFilesFails) {
  TempDir tmp;
  const fs::path dir = tmp.path / "docs";
  write_file(dir / "blob.txt", binary_bytes());
  write_file(dir / "latin1.txt", invalid_utf8());
  const RunResult r = slm_run({"index", "add", "--db", (tmp.path / "x.db").string(), dir.string()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(has(line_naming(r.err, "blob.txt"), "binary")) << r.err;
  EXPECT_TRUE(has(line_naming(r.err, "latin1.txt"), "UTF-8")) << r.err;
  EXPECT_TRUE(has_error_line(r.err) && has(r.err, "none of the 2 files")) << r.err;
}

TEST(CliRagBadInput, EmptyFolder) {
  TempDir tmp;
  fs::create_directories(tmp.path / "nothing-here");
  const RunResult r = slm_run({"index", "add", "--db", (tmp.path / "x.db").string(), (tmp.path / "nothing-here").string()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  const std::string line = line_naming(r.err, "nothing-here");
  EXPECT_TRUE(has(line, "slm: error:") && has(line, "no files") && has(line, "empty")) << r.err;
}

TEST(CliRagBadInput, FolderOfOnlyUnsupportedFiles) {
  TempDir tmp;
  const fs::path dir = tmp.path / "other-stuff";
  write_file(dir / "report.docx", "PK\x03\x04");
  write_file(dir / "data.bin", std::string("\x00\x01\x02", 3));
  const RunResult r = slm_run({"index", "add", "--db", (tmp.path / "x.db").string(), dir.string()});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  const std::string line = line_naming(r.err, "other-stuff");
  EXPECT_TRUE(has(line, "slm: error:") && has(line, "no files to index")) << r.err;
  // The skipped files are named, and what the index reads is said.
  EXPECT_TRUE(has(r.err, "report.docx") && has(r.err, "data.bin") && has(r.err, "skipped")) << r.err;
  EXPECT_TRUE(has(r.err, ".txt") && has(r.err, ".pdf")) << r.err;
}

// ---- queries ------------------------------------------------------------------------------------

TEST(CliRagBadInput, QueriesOfPunctuationOrFtsSyntax) {
  TempDir tmp;
  const fs::path db = make_index(tmp);
  // Only punctuation: nothing to search for.
  for (const std::string q : {"?!", "*", "\"", "()", "^", "-", ":", "   "}) {
    const RunResult r = slm_run({"search", "--db", db.string(), "--", q});
    EXPECT_EQ(r.exit_code, 1) << "[" << q << "]\n" << r.out << r.err;
    EXPECT_TRUE(has_error_line(r.err) && has(r.err, "no words")) << "[" << q << "]\n" << r.err;
  }
  // FTS5 operators and syntax are words to search for (or, when nothing is left, the same
  // message); never an FTS syntax error.
  for (const std::string q : {"AND OR NOT", "AND", "NOT penguins", "\"unbalanced", "unbalanced\"", "-foo", "NEAR(a b)",
                              "NEAR(penguins ships, 2)", "col:term", "text:penguins", "{text title}: lamp", "*",
                              "^x", "penguin*", "a + b", "penguins OR", "OR lighthouse", "(krill", "krill)",
                              "title:", "'single quote'", "x\" OR \"1\"=\"1", "penguins; DROP TABLE chunks; --"}) {
    const RunResult r = slm_run({"search", "--db", db.string(), "--", q});
    EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 1) << "[" << q << "]: status " << r.exit_code << "\n" << r.err;
    if (r.exit_code == 1) {
      EXPECT_TRUE(has(r.err, "no words")) << "[" << q << "]\n" << r.err;
    } else {
      EXPECT_FALSE(r.out.empty()) << "[" << q << "]";
    }
  }
  // The words in such queries are searched for.
  RunResult r = slm_run({"search", "--db", db.string(), "--", "NOT penguins"});
  EXPECT_TRUE(has(r.out, "penguins.txt")) << r.out;
  r = slm_run({"search", "--db", db.string(), "--", "{text title}: lamp"});
  EXPECT_TRUE(has(r.out, "lighthouses.md")) << r.out;
  // The index is untouched by any of it.
  EXPECT_EQ(indexed_paths(db), (std::vector<std::string>{"lighthouses.md", "penguins.txt"}));
}

// ---- --db files that are not an slm index -------------------------------------------------------

// Every command that opens an index must refuse `db` with a message naming it and matching one of
// `why`; the file must be left as it was.
void expect_refused(const TempDir& tmp, const fs::path& db, const std::vector<std::string>& why) {
  write_file(tmp.path / "in" / "penguins.txt", kGoodText);
  const std::string before = fs::exists(db) ? slm::test::read_text_file(db) : "";
  const std::vector<std::vector<std::string>> commands = {
      {"search", "--db", db.string(), "penguins"},
      {"index", "stats", "--db", db.string()},
      {"index", "list", "--db", db.string()},
      {"index", "add", "--db", db.string(), (tmp.path / "in").string()},
  };
  for (const auto& args : commands) {
    const RunResult r = slm_run(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << " " << args[1] << "\n" << r.out << r.err;
    const std::string line = line_naming(r.err, db.filename().string());
    EXPECT_TRUE(has(line, "slm: error:") && has_any(line, why)) << args[0] << " " << args[1] << "\n" << r.err;
  }
  if (fs::exists(db)) {
    EXPECT_TRUE(slm::test::read_text_file(db) == before) << db << " was changed";
  }
}

TEST(CliRagBadInput, DbThatIsATextFile) {
  TempDir tmp;
  const fs::path db = tmp.path / "notes.db";
  write_file(db, "These are my notes, not a database.\nLine two.\n");
  expect_refused(tmp, db, {"not an SQLite database"});
}

TEST(CliRagBadInput, DbThatIsAnotherSqliteDatabase) {
  TempDir tmp;
  const fs::path db = tmp.path / "contacts.db";
  sql_exec(db, "CREATE TABLE contacts(name TEXT, phone TEXT); INSERT INTO contacts VALUES('Ada', '555-0100');");
  expect_refused(tmp, db, {"not an slm index"});
  EXPECT_EQ(sql_int(db, "SELECT count(*) FROM sqlite_master"), 1) << "tables were added to another program's database";
  EXPECT_EQ(sql_int(db, "SELECT count(*) FROM contacts"), 1);
}

TEST(CliRagBadInput, DbFromANewerSchema) {
  TempDir tmp;
  const fs::path db = make_index(tmp);
  const int newer = slm::rag::kSchemaVersion + 1;
  // The application id stays: an slm index, from a newer slm.
  sql_exec(db, "PRAGMA user_version = " + std::to_string(newer));
  const int64_t app_id = sql_int(db, "PRAGMA application_id");
  EXPECT_NE(app_id, 0);
  const std::vector<std::vector<std::string>> commands = {
      {"search", "--db", db.string(), "penguins"},
      {"index", "stats", "--db", db.string()},
      {"index", "add", "--db", db.string(), (tmp.path / "docs").string()},
  };
  for (const auto& args : commands) {
    const RunResult r = slm_run(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << " " << args[1] << "\n" << r.out << r.err;
    const std::string line = line_naming(r.err, db.filename().string());
    EXPECT_TRUE(has(line, "slm: error:") && has(line, "version " + std::to_string(newer)) && has(line, "newer"))
        << args[0] << " " << args[1] << "\n" << r.err;
  }
  EXPECT_EQ(sql_int(db, "PRAGMA user_version"), newer);
  EXPECT_EQ(sql_int(db, "PRAGMA application_id"), app_id);
}

TEST(CliRagBadInput, DamagedIndex) {
  TempDir tmp;
  const fs::path good = make_index(tmp);
  // The first pages only: the header says SQLite, the rest is gone.
  const std::string bytes = slm::test::read_text_file(good);
  ASSERT_GT(bytes.size(), 8192u);
  const fs::path db = tmp.path / "cut.db";
  write_file(db, bytes.substr(0, 4096));
  expect_refused(tmp, db, {"damaged", "malformed"});
}

TEST(CliRagBadInput, SearchOnAMissingDb) {
  TempDir tmp;
  const fs::path db = tmp.path / "nowhere.db";
  const RunResult r = slm_run({"search", "--db", db.string(), "penguins"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  const std::string line = line_naming(r.err, "nowhere.db");
  EXPECT_TRUE(has(line, "slm: error:") && has(line, "no index")) << r.err;
  EXPECT_FALSE(fs::exists(db)) << "search created the file";
  const RunResult st = slm_run({"index", "stats", "--db", db.string()});
  EXPECT_EQ(st.exit_code, 1) << st.out << st.err;
  EXPECT_FALSE(fs::exists(db)) << "index stats created the file";
}

}  // namespace
