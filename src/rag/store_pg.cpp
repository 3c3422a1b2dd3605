// See store_pg.h.
#include "rag/store_pg.h"

#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <map>
#include <regex>

#include "core/error.h"

namespace slm::rag {

namespace {

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// What slm_meta says an slm index is (another program's slm_meta is refused, not overwritten).
constexpr const char* kApplication = "slm index";
// pg_advisory_xact_lock key ("SLMI") under which the schema is created: two processes opening a
// new index at once create it once.
constexpr int64_t kSchemaLock = 0x534C4D49;

const char* const kSchemaV1 = R"sql(
CREATE TABLE slm_meta(key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE slm_documents(
  id bigserial PRIMARY KEY,
  path text NOT NULL UNIQUE,
  rel_path text NOT NULL,
  root text NOT NULL,
  hash text NOT NULL,
  size bigint NOT NULL,
  mtime bigint NOT NULL,
  title text NOT NULL,
  format text NOT NULL,
  indexed_at bigint NOT NULL
);
-- len_*: the column's length in terms (BM25F's document length), as FTS5 counts it.
CREATE TABLE slm_chunks(
  id bigserial PRIMARY KEY,
  doc_id bigint NOT NULL REFERENCES slm_documents(id) ON DELETE CASCADE,
  ord integer NOT NULL,
  text text NOT NULL,
  heading_path text NOT NULL,
  line_start integer NOT NULL,
  line_end integer NOT NULL,
  page_start integer NOT NULL,
  page_end integer NOT NULL,
  n_tokens integer NOT NULL,
  len_text integer NOT NULL,
  len_headings integer NOT NULL,
  len_title integer NOT NULL,
  UNIQUE(doc_id, ord)
);
-- One row per term and chunk: the term's frequency in each column, and copies of what scoring
-- needs from the chunk (its column lengths, document, whether it opens the document), all in
-- the primary key's index: a search reads the index alone, 11 ms where joining the chunks took
-- 29 (python-docs, a 3-word query). The second index serves deletion with the chunk. No foreign
-- key: checking one per posting (60 a chunk) made indexing a third slower, so the store deletes
-- a document's postings itself, in the transaction that deletes the document, and
-- `slm index stats --check` looks for postings without a chunk or out of step with it.
CREATE TABLE slm_postings(
  term text NOT NULL,
  chunk_id bigint NOT NULL,
  tf_text integer NOT NULL,
  tf_headings integer NOT NULL,
  tf_title integer NOT NULL,
  len_text integer NOT NULL,
  len_headings integer NOT NULL,
  len_title integer NOT NULL,
  doc_id bigint NOT NULL,
  lead boolean NOT NULL,
  PRIMARY KEY(term, chunk_id)
    INCLUDE (tf_text, tf_headings, tf_title, len_text, len_headings, len_title, doc_id, lead)
);
CREATE INDEX slm_postings_chunk ON slm_postings(chunk_id);
-- What BM25F averages over, kept with every chunk added or removed (a scan of slm_chunks per
-- query would cost more than the query).
CREATE TABLE slm_totals(
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  n_rows bigint NOT NULL,
  len_text bigint NOT NULL,
  len_headings bigint NOT NULL,
  len_title bigint NOT NULL
);
INSERT INTO slm_totals VALUES (true, 0, 0, 0, 0);
CREATE FUNCTION slm_track_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE slm_totals SET n_rows = n_rows + 1, len_text = len_text + NEW.len_text,
      len_headings = len_headings + NEW.len_headings, len_title = len_title + NEW.len_title;
  ELSE
    UPDATE slm_totals SET n_rows = n_rows - 1, len_text = len_text - OLD.len_text,
      len_headings = len_headings - OLD.len_headings, len_title = len_title - OLD.len_title;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER slm_chunks_totals AFTER INSERT OR DELETE ON slm_chunks
  FOR EACH ROW EXECUTE FUNCTION slm_track_totals();
CREATE TABLE slm_embed_models(
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  fingerprint text NOT NULL UNIQUE,
  dim integer NOT NULL
);
CREATE TABLE slm_embeddings(
  chunk_id bigint NOT NULL REFERENCES slm_chunks(id) ON DELETE CASCADE,
  model_id bigint NOT NULL REFERENCES slm_embed_models(id) ON DELETE CASCADE,
  vec bytea NOT NULL,
  PRIMARY KEY(chunk_id, model_id)
);
CREATE INDEX slm_embeddings_model ON slm_embeddings(model_id);
CREATE TABLE slm_roots(path text PRIMARY KEY);
)sql";

// A query's parameter: text, or bytes sent as binary (bytea).
struct Param {
  std::string value;
  bool binary = false;
  Param(const std::string& s) : value(s) {}  // NOLINT: implicit on purpose, params read as a list
  Param(const char* s) : value(s) {}         // NOLINT
  Param(int64_t v) : value(std::to_string(v)) {}  // NOLINT
  Param(int v) : value(std::to_string(v)) {}      // NOLINT
  Param(double v) : value(fmt::format("{}", v)) {}  // NOLINT: shortest text that reads back exactly
  static Param bytes(const void* p, size_t n) {
    Param b{std::string(static_cast<const char*>(p), n)};
    b.binary = true;
    return b;
  }
};

// A PostgreSQL array literal of text: {"a","b"} with quotes and backslashes escaped.
std::string text_array(const std::vector<std::string>& v) {
  std::string out = "{";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : v[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

template <class T>
std::string int_array(const std::vector<T>& v) {
  std::string out = "{";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(v[i]);
  }
  return out + "}";
}

class Result {
 public:
  explicit Result(PGresult* r) : r_(r) {}
  ~Result() { PQclear(r_); }
  Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  int rows() const { return PQntuples(r_); }
  PGresult* get() const { return r_; }
  std::string text(int row, int col) const { return std::string(PQgetvalue(r_, row, col), static_cast<size_t>(PQgetlength(r_, row, col))); }
  int64_t int64(int row, int col) const { return std::strtoll(PQgetvalue(r_, row, col), nullptr, 10); }
  double real(int row, int col) const { return std::strtod(PQgetvalue(r_, row, col), nullptr); }
  bool boolean(int row, int col) const { return PQgetvalue(r_, row, col)[0] == 't'; }
  const char* bytes(int row, int col, size_t& n) const {
    n = static_cast<size_t>(PQgetlength(r_, row, col));
    return PQgetvalue(r_, row, col);
  }

 private:
  PGresult* r_;
};

// The first line of libpq's message, without its "ERROR:  " and trailing newline.
std::string pg_message(const char* raw) {
  std::string m = raw ? raw : "?";
  if (m.rfind("ERROR:  ", 0) == 0) m.erase(0, 8);
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  const size_t nl = m.find('\n');
  return nl == std::string::npos ? m : m.substr(0, nl);
}

// Runs `sql` with `params` ($1, $2, ...); rows in binary when `binary_rows`. Throws slm::Error
// naming the index and PostgreSQL's message. A connection lost since the last query (the server
// restarted) is opened again once.
// What every session of ours is set to: UTF-8, and no JIT (compiling a search costs ~0.5 s
// where the search itself takes ~20 ms: a fresh index, not yet analysed, looks expensive enough
// to the planner to compile). Empty, or what failed.
std::string prepare_session(pg_conn* conn) {
  if (PQsetClientEncoding(conn, "UTF8") != 0) return "the server cannot talk UTF-8";
  const Result r(PQexec(conn, "SET jit = off"));
  if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return pg_message(PQresultErrorMessage(r.get()));
  return {};
}

// Opens the connection again (same URL), set up as the constructor set up the first session.
bool reconnect(pg_conn* conn) {
  PQreset(conn);
  return PQstatus(conn) == CONNECTION_OK && prepare_session(conn).empty();
}

Result run(pg_conn* conn, const std::string& where, const std::string& sql, const std::vector<Param>& params = {},
           bool binary_rows = false) {
  if (PQstatus(conn) != CONNECTION_OK && !reconnect(conn))
    throw StoreUnavailable(fmt::format("index {}: PostgreSQL cannot be reached: {}", where, pg_message(PQerrorMessage(conn))));
  std::vector<const char*> values;
  std::vector<int> lengths, formats;
  for (const Param& p : params) {
    values.push_back(p.value.data());
    lengths.push_back(static_cast<int>(p.value.size()));
    formats.push_back(p.binary ? 1 : 0);
  }
  PGresult* raw = PQexecParams(conn, sql.c_str(), static_cast<int>(params.size()), nullptr, values.data(),
                               lengths.data(), formats.data(), binary_rows ? 1 : 0);
  Result r(raw);
  const ExecStatusType st = raw ? PQresultStatus(raw) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    const std::string msg = pg_message(raw ? PQresultErrorMessage(raw) : PQerrorMessage(conn));
    // The server went away during the statement (restarted, shut down): the next one reconnects.
    // libpq's own errors carry no SQLSTATE; the server's for this are classes 08 and 57P.
    const char* state = raw ? PQresultErrorField(raw, PG_DIAG_SQLSTATE) : nullptr;
    const std::string code = state ? state : "";
    if (PQstatus(conn) != CONNECTION_OK || code.empty() || code.rfind("08", 0) == 0 || code.rfind("57P", 0) == 0) {
      // libpq may still call the dead connection good: start again now (or at the next call,
      // if the server is not back yet), so that this is the only statement lost.
      reconnect(conn);
      throw StoreUnavailable(fmt::format("index {}: the connection to PostgreSQL was lost: {}", where, msg));
    }
    std::string what = sql.substr(0, sql.find_first_of("\n("));
    fail("index {}: {} (PostgreSQL, in: {} ...)", where, msg, what);
  }
  return r;
}

// BEGIN ... COMMIT, rolled back when the scope is left by an exception.
class Transaction {
 public:
  Transaction(pg_conn* conn, const std::string& where) : conn_(conn), where_(where) { run(conn_, where_, "BEGIN"); }
  ~Transaction() {
    if (!done_) PQclear(PQexec(conn_, "ROLLBACK"));
  }
  void commit() {
    run(conn_, where_, "COMMIT");
    done_ = true;
  }

 private:
  pg_conn* conn_;
  const std::string& where_;
  bool done_ = false;
};

DocumentInfo document_row(const Result& r, int i) {
  return DocumentInfo{r.int64(i, 0), r.text(i, 1), r.text(i, 2), r.text(i, 3), r.text(i, 4), r.int64(i, 5),
                      r.int64(i, 6), r.text(i, 7), r.text(i, 8), r.int64(i, 9)};
}

constexpr const char* kDocumentColumns =
    "SELECT d.id, d.path, d.rel_path, d.root, d.hash, d.size, d.mtime, d.title, d.format, "
    "(SELECT count(*) FROM slm_chunks c WHERE c.doc_id = d.id) FROM slm_documents d ";

constexpr const char* kModelColumns =
    "SELECT m.id, m.name, m.fingerprint, m.dim, (SELECT count(*) FROM slm_embeddings e WHERE e.model_id = m.id) "
    "FROM slm_embed_models m ";

// Term frequencies of one column.
std::map<std::string, int> term_counts(const std::string& text, int& length) {
  std::map<std::string, int> tf;
  const std::vector<std::string> terms = index_terms(text);
  length = static_cast<int>(terms.size());
  for (const std::string& t : terms) ++tf[t];
  return tf;
}

}  // namespace

std::string redact_postgres_url(const std::string& url) {
  static const std::regex userinfo(R"(^(postgres(?:ql)?://[^:/@?]*):[^@/?]*@)");
  static const std::regex param(R"(([?&])password=[^&]*&?)");
  std::string out = std::regex_replace(url, userinfo, "$1@");
  out = std::regex_replace(out, param, "$1");
  if (!out.empty() && (out.back() == '&' || out.back() == '?')) out.pop_back();
  return out;
}

PgStore::PgStore(const std::string& url, bool create) : path_(redact_postgres_url(url)) {
  conn_ = PQconnectdb(url.c_str());
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
    const std::string msg = conn_ ? pg_message(PQerrorMessage(conn_)) : "out of memory";
    PQfinish(conn_);
    conn_ = nullptr;
    fail("cannot reach the PostgreSQL index {}: {} (check the URL, postgresql://USER@HOST:PORT/DATABASE, and that the "
         "server runs and lets this user in)",
         path_, msg);
  }
  // CREATE ... IF NOT EXISTS and the like print notices; they are not the user's business.
  PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
  try {
    if (const std::string why = prepare_session(conn_); !why.empty()) fail("index {}: {}", path_, why);
    open_schema(create);
  } catch (...) {
    PQfinish(conn_);
    conn_ = nullptr;
    throw;
  }
}

PgStore::~PgStore() {
  if (conn_) PQfinish(conn_);
}

void PgStore::open_schema(bool create) {
  Transaction tx(conn_, path_);
  run(conn_, path_, "SELECT pg_advisory_xact_lock($1)", {kSchemaLock});
  const Result schema = run(conn_, path_, "SELECT current_schema(), to_regclass('slm_meta') IS NOT NULL");
  const std::string where = schema.text(0, 0);
  if (where.empty())
    fail("index {}: the connection has no current schema to keep the index in (its search_path names none that "
         "exists); create one, or name one with ?options=-csearch_path%3DNAME",
         path_);
  if (!schema.boolean(0, 1)) {
    if (!create) fail("no slm index at {} (make one with: slm index add --db {} FOLDER)", path_, path_);
    // Many statements in one string: the simple protocol (PQexec), inside this transaction.
    const Result made(PQexec(conn_, kSchemaV1));
    if (PQresultStatus(made.get()) != PGRES_COMMAND_OK)
      fail("index {}: creating the index's tables failed: {}", path_, pg_message(PQresultErrorMessage(made.get())));
    run(conn_, path_, "INSERT INTO slm_meta(key, value) VALUES ('application', $1), ('schema_version', $2)",
        {kApplication, kSchemaVersion});
  }
  const Result meta = run(conn_, path_, "SELECT key, value FROM slm_meta WHERE key IN ('application', 'schema_version')");
  std::map<std::string, std::string> kv;
  for (int i = 0; i < meta.rows(); ++i) kv[meta.text(i, 0)] = meta.text(i, 1);
  if (kv["application"] != kApplication)
    fail("{} has a table slm_meta that is not an slm index's (application '{}'); use another database or schema",
         path_, kv["application"]);
  const int version = std::atoi(kv["schema_version"].c_str());
  if (version > kSchemaVersion)
    fail("{} is an index of schema version {}, from a newer slm (this one reads versions up to {}); use that slm or "
         "index again into a new database",
         path_, version, kSchemaVersion);
  // Version 1 is the first schema: nothing older to migrate from yet.
  tx.commit();
  // Postings never analysed (an indexing run killed before its end, autovacuum not there yet):
  // analysed now, once, rather than every search planned blind.
  const Result seen = run(conn_, path_,
                          "SELECT n_live_tup > 0 AND last_analyze IS NULL AND last_autoanalyze IS NULL "
                          "FROM pg_stat_user_tables WHERE relid = to_regclass('slm_postings')");
  if (seen.rows() > 0 && seen.boolean(0, 0)) {
    try {
      refresh_statistics();
    } catch (const Error&) {
      // Only worth having: a user allowed to search but not to vacuum searches unhelped.
    }
  }
}

std::optional<DocumentInfo> PgStore::find_document(const std::string& path) const {
  const Result r = run(conn_, path_, std::string(kDocumentColumns) + "WHERE d.path = $1", {path});
  if (r.rows() == 0) return std::nullopt;
  return document_row(r, 0);
}

std::vector<DocumentInfo> PgStore::documents() const {
  const Result r = run(conn_, path_, std::string(kDocumentColumns) + "ORDER BY d.root, d.rel_path");
  std::vector<DocumentInfo> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(document_row(r, i));
  return out;
}

int64_t PgStore::put_document(const DocumentInfo& doc, const std::vector<Chunk>& chunks, const EmbedModelInfo* model,
                              const std::vector<std::vector<float>>* vectors) {
  if (model && (!vectors || vectors->size() != chunks.size()))
    fail("index: {} vectors for {} chunks of {}", vectors ? vectors->size() : 0, chunks.size(), doc.path);
  Transaction tx(conn_, path_);
  // Two indexers putting the same file at once take turns (else the second's insert would meet
  // the first's row under the unique path and fail).
  run(conn_, path_, "SELECT pg_advisory_xact_lock(hashtext($1))", {doc.path});
  run(conn_, path_,
      "DELETE FROM slm_postings WHERE chunk_id IN "
      "(SELECT c.id FROM slm_chunks c JOIN slm_documents d ON d.id = c.doc_id WHERE d.path = $1)",
      {doc.path});
  run(conn_, path_, "DELETE FROM slm_documents WHERE path = $1", {doc.path});
  const Result ins = run(conn_, path_,
                         "INSERT INTO slm_documents(path, rel_path, root, hash, size, mtime, title, format, indexed_at) "
                         "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                         {doc.path, doc.rel_path, doc.root, doc.hash, doc.size, doc.mtime, doc.title, doc.format, now_seconds()});
  const int64_t doc_id = ins.int64(0, 0);
  // The title column also holds the file's path words, as in the SQLite store.
  const std::string title_words = doc.title + " " + doc.rel_path;
  int len_title = 0;
  const std::map<std::string, int> title_tf = term_counts(title_words, len_title);
  // All chunks in one statement and all their postings in another (arrays unnested on the
  // server): a document costs a handful of round trips, not a few per chunk.
  std::vector<int> ords, line_start, line_end, page_start, page_end, n_tokens, len_text, len_head;
  std::vector<std::string> texts, headings;
  std::vector<int> p_ord, p_text, p_head, p_title;
  std::vector<std::string> p_term;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    int lt = 0, lh = 0;
    const std::map<std::string, int> text_tf = term_counts(c.text, lt), head_tf = term_counts(c.heading_path, lh);
    ords.push_back(static_cast<int>(i));
    texts.push_back(c.text);
    headings.push_back(c.heading_path);
    line_start.push_back(c.line_start);
    line_end.push_back(c.line_end);
    page_start.push_back(c.page_start);
    page_end.push_back(c.page_end);
    n_tokens.push_back(c.n_tokens);
    len_text.push_back(lt);
    len_head.push_back(lh);
    std::map<std::string, std::array<int, 3>> tf;
    for (const auto& [t, n] : text_tf) tf[t][0] = n;
    for (const auto& [t, n] : head_tf) tf[t][1] = n;
    for (const auto& [t, n] : title_tf) tf[t][2] = n;
    for (const auto& [t, n] : tf) {
      p_ord.push_back(static_cast<int>(i));
      p_term.push_back(t);
      p_text.push_back(n[0]);
      p_head.push_back(n[1]);
      p_title.push_back(n[2]);
    }
  }
  std::vector<int64_t> chunk_ids(chunks.size(), 0);
  if (!chunks.empty()) {
    const Result made = run(conn_, path_,
                            "INSERT INTO slm_chunks(doc_id, ord, text, heading_path, line_start, line_end, page_start, page_end, "
                            "n_tokens, len_text, len_headings, len_title) "
                            "SELECT $1, u.o, u.t, u.h, u.ls, u.le, u.ps, u.pe, u.n, u.lt, u.lh, $2 FROM unnest($3::int[], $4::text[], "
                            "$5::text[], $6::int[], $7::int[], $8::int[], $9::int[], $10::int[], $11::int[], $12::int[]) "
                            "AS u(o, t, h, ls, le, ps, pe, n, lt, lh) RETURNING id, ord",
                            {doc_id, len_title, int_array(ords), text_array(texts), text_array(headings), int_array(line_start),
                             int_array(line_end), int_array(page_start), int_array(page_end), int_array(n_tokens),
                             int_array(len_text), int_array(len_head)});
    for (int r = 0; r < made.rows(); ++r) chunk_ids.at(static_cast<size_t>(made.int64(r, 1))) = made.int64(r, 0);
  }
  if (!p_term.empty())
    run(conn_, path_,
        "INSERT INTO slm_postings(term, chunk_id, tf_text, tf_headings, tf_title, len_text, len_headings, len_title, "
        "doc_id, lead) SELECT u.t, c.id, u.x, u.y, u.z, c.len_text, c.len_headings, c.len_title, c.doc_id, "
        "c.heading_path = $7 FROM unnest($2::int[], $3::text[], $4::int[], $5::int[], $6::int[]) AS u(o, t, x, y, z) "
        "JOIN slm_chunks c ON c.doc_id = $1 AND c.ord = u.o",
        {doc_id, int_array(p_ord), text_array(p_term), int_array(p_text), int_array(p_head), int_array(p_title), doc.title});
  if (model)
    for (size_t i = 0; i < chunks.size(); ++i) {
      const auto& v = (*vectors)[i];
      if (static_cast<int64_t>(v.size()) != model->dim)
        fail("index: a vector of {} numbers for model {} of dimension {}", v.size(), model->name, model->dim);
      run(conn_, path_, "INSERT INTO slm_embeddings(chunk_id, model_id, vec) VALUES ($1, $2, $3)",
          {chunk_ids[i], model->id, Param::bytes(v.data(), v.size() * sizeof(float))});
    }
  tx.commit();
  return doc_id;
}

void PgStore::set_mtime(int64_t doc_id, int64_t mtime) {
  run(conn_, path_, "UPDATE slm_documents SET mtime = $1 WHERE id = $2", {mtime, doc_id});
}

void PgStore::remove_document(int64_t doc_id) {
  Transaction tx(conn_, path_);
  run(conn_, path_, "DELETE FROM slm_postings WHERE chunk_id IN (SELECT id FROM slm_chunks WHERE doc_id = $1)", {doc_id});
  run(conn_, path_, "DELETE FROM slm_documents WHERE id = $1", {doc_id});
  tx.commit();
}

void PgStore::add_root(const std::string& path) {
  run(conn_, path_, "INSERT INTO slm_roots(path) VALUES ($1) ON CONFLICT DO NOTHING", {path});
}

std::vector<std::string> PgStore::roots() const {
  const Result r = run(conn_, path_, "SELECT path FROM slm_roots ORDER BY path");
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.text(i, 0));
  return out;
}

std::optional<EmbedModelInfo> PgStore::find_model(const std::string& fingerprint) const {
  const Result r = run(conn_, path_, std::string(kModelColumns) + "WHERE m.fingerprint = $1", {fingerprint});
  if (r.rows() == 0) return std::nullopt;
  return EmbedModelInfo{r.int64(0, 0), r.text(0, 1), r.text(0, 2), r.int64(0, 3), r.int64(0, 4)};
}

EmbedModelInfo PgStore::register_model(const std::string& name, const std::string& fingerprint, int64_t dim) {
  run(conn_, path_, "INSERT INTO slm_embed_models(name, fingerprint, dim) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
      {name, fingerprint, dim});
  return *find_model(fingerprint);
}

std::vector<EmbedModelInfo> PgStore::models() const {
  const Result r = run(conn_, path_, std::string(kModelColumns) + "ORDER BY m.id");
  std::vector<EmbedModelInfo> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back({r.int64(i, 0), r.text(i, 1), r.text(i, 2), r.int64(i, 3), r.int64(i, 4)});
  return out;
}

std::vector<ChunkInfo> PgStore::chunks_without_vectors(int64_t doc_id, int64_t model_id) const {
  const Result r = run(conn_, path_,
                       "SELECT c.id, c.ord, c.text, c.heading_path FROM slm_chunks c WHERE c.doc_id = $1 AND NOT EXISTS "
                       "(SELECT 1 FROM slm_embeddings e WHERE e.chunk_id = c.id AND e.model_id = $2) ORDER BY c.ord",
                       {doc_id, model_id});
  std::vector<ChunkInfo> out;
  for (int i = 0; i < r.rows(); ++i) {
    ChunkInfo c;
    c.id = r.int64(i, 0);
    c.doc_id = doc_id;
    c.ord = r.int64(i, 1);
    c.text = r.text(i, 2);
    c.heading_path = r.text(i, 3);
    out.push_back(std::move(c));
  }
  return out;
}

void PgStore::put_vectors(int64_t model_id, const std::vector<int64_t>& chunk_ids, const std::vector<std::vector<float>>& vectors) {
  Transaction tx(conn_, path_);
  for (size_t i = 0; i < chunk_ids.size(); ++i)
    run(conn_, path_,
        "INSERT INTO slm_embeddings(chunk_id, model_id, vec) VALUES ($1, $2, $3) "
        "ON CONFLICT (chunk_id, model_id) DO UPDATE SET vec = excluded.vec",
        {chunk_ids[i], model_id, Param::bytes(vectors[i].data(), vectors[i].size() * sizeof(float))});
  tx.commit();
}

void PgStore::load_vectors(int64_t model_id, std::vector<int64_t>& ids, std::vector<float>& matrix) const {
  const Result m = run(conn_, path_, "SELECT dim FROM slm_embed_models WHERE id = $1", {model_id});
  if (m.rows() == 0) fail("index {}: no embedding model with id {}", path_, model_id);
  const int64_t dim = m.int64(0, 0);
  ids.clear();
  matrix.clear();
  // Binary rows: the vectors come as the bytes they were stored as, not hex text twice their size.
  const Result r = run(conn_, path_, "SELECT chunk_id, vec FROM slm_embeddings WHERE model_id = $1 ORDER BY chunk_id",
                       {model_id}, true);
  ids.reserve(static_cast<size_t>(r.rows()));
  matrix.resize(static_cast<size_t>(r.rows()) * static_cast<size_t>(dim));
  for (int i = 0; i < r.rows(); ++i) {
    size_t n = 0;
    const char* id = r.bytes(i, 0, n);
    uint64_t be = 0;
    for (size_t k = 0; k < 8 && k < n; ++k) be = (be << 8) | static_cast<unsigned char>(id[k]);  // int8: big-endian
    const char* v = r.bytes(i, 1, n);
    if (n != static_cast<size_t>(dim) * sizeof(float))
      fail("index {}: the vector of chunk {} has {} bytes, not {} (dimension {}); the index is damaged", path_,
           static_cast<int64_t>(be), n, dim * 4, dim);
    ids.push_back(static_cast<int64_t>(be));
    std::memcpy(matrix.data() + static_cast<size_t>(i) * static_cast<size_t>(dim), v, n);
  }
}

std::vector<Bm25Hit> PgStore::bm25(const LexicalQuery& q, int limit, const Bm25Params& p) const {
  // The words as the index's terms; FTS5 reads a word the tokenizer splits ("e.g") as a phrase,
  // here its terms count one by one.
  auto terms_of = [](const std::vector<std::string>& words) {
    std::vector<std::string> out;
    for (const std::string& w : words)
      for (std::string& t : index_terms(w))
        if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(std::move(t));
    return out;
  };
  const std::vector<std::string> scored = terms_of(q.words);
  const std::vector<std::string> select = terms_of(q.select);
  if (scored.empty() || (!q.select.empty() && select.empty())) return {};
  // The arithmetic is bm25f.cpp's, term by term and in the same order, so that both stores give
  // the same score to the last bits but the order of the final sum over terms. MATERIALIZED: the
  // planner would otherwise inline the IDF's count into every posting row it scores.
  // An unnamed statement is planned with its parameters' values: no select words fold the
  // selecting condition away.
  const std::string sql = R"sql(
WITH st AS MATERIALIZED (
  SELECT n_rows::float8 AS n,
    CASE WHEN n_rows > 0 AND len_text > 0 THEN len_text::float8 / n_rows ELSE 1 END AS avg_text,
    CASE WHEN n_rows > 0 AND len_headings > 0 THEN len_headings::float8 / n_rows ELSE 1 END AS avg_headings,
    CASE WHEN n_rows > 0 AND len_title > 0 THEN len_title::float8 / n_rows ELSE 1 END AS avg_title
  FROM slm_totals WHERE one),  -- by its key: the planner knows it is one row, analysed or not
idf AS MATERIALIZED (
  SELECT w.term, ln(1.0 + (st.n - df.h + 0.5) / (df.h + 0.5)) AS idf
  FROM unnest($1::text[]) AS w(term) CROSS JOIN st
  CROSS JOIN LATERAL (SELECT count(*)::float8 AS h FROM slm_postings p WHERE p.term = w.term) df),
scored AS (
  SELECT p.chunk_id, min(p.doc_id) AS doc_id, bool_or(p.lead) AS lead,
    sum(i.idf * f.f * ($5::float8 + 1.0) / (f.f + $5::float8)) AS s
  FROM idf i JOIN slm_postings p ON p.term = i.term CROSS JOIN st
  CROSS JOIN LATERAL (SELECT
      p.tf_text * ($6::float8 / (1.0 - $7::float8 + $7::float8 * p.len_text / st.avg_text))
    + p.tf_headings * ($8::float8 / (1.0 - $9::float8 + $9::float8 * p.len_headings / st.avg_headings))
    + p.tf_title * ($10::float8 / (1.0 - $11::float8 + $11::float8 * p.len_title / st.avg_title)) AS f) f
  WHERE f.f > 0
    AND (cardinality($2::text[]) = 0 OR p.chunk_id IN (SELECT chunk_id FROM slm_postings WHERE term = ANY($2::text[])))
  GROUP BY p.chunk_id
  ORDER BY s DESC, p.chunk_id
  LIMIT $3)
SELECT x.chunk_id, x.doc_id, x.s, x.lead FROM scored x
ORDER BY x.s * (1.0 + $12::float8 * x.lead::int) DESC, x.chunk_id
LIMIT $4)sql";
  const Result r = run(conn_, path_, sql,
                       {text_array(scored), text_array(select), int64_t{2} * limit, int64_t{limit}, p.k1, p.text_weight,
                        p.text_b, p.heading_weight, p.heading_b, p.title_weight, p.title_b, p.lead_boost});
  std::vector<Bm25Hit> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back({r.int64(i, 0), r.int64(i, 1), r.real(i, 2), r.boolean(i, 3)});
  return out;
}

namespace {

constexpr const char* kChunkColumns =
    "SELECT c.id, c.doc_id, c.ord, c.text, c.heading_path, c.line_start, c.line_end, c.page_start, c.page_end, "
    "d.rel_path, d.path, d.title FROM slm_chunks c JOIN slm_documents d ON d.id = c.doc_id ";

ChunkInfo chunk_row(const Result& r, int i) {
  ChunkInfo c;
  c.id = r.int64(i, 0);
  c.doc_id = r.int64(i, 1);
  c.ord = r.int64(i, 2);
  c.text = r.text(i, 3);
  c.heading_path = r.text(i, 4);
  c.line_start = static_cast<int>(r.int64(i, 5));
  c.line_end = static_cast<int>(r.int64(i, 6));
  c.page_start = static_cast<int>(r.int64(i, 7));
  c.page_end = static_cast<int>(r.int64(i, 8));
  c.rel_path = r.text(i, 9);
  c.path = r.text(i, 10);
  c.title = r.text(i, 11);
  return c;
}

}  // namespace

std::optional<ChunkInfo> PgStore::chunk(int64_t id) const {
  const Result r = run(conn_, path_, std::string(kChunkColumns) + "WHERE c.id = $1", {id});
  if (r.rows() == 0) return std::nullopt;
  return chunk_row(r, 0);
}

std::vector<ChunkInfo> PgStore::chunks(const std::vector<int64_t>& ids) const {
  if (ids.empty()) return {};
  const Result r = run(conn_, path_,
                       std::string(kChunkColumns) + "JOIN unnest($1::bigint[]) WITH ORDINALITY AS u(id, n) ON u.id = c.id ORDER BY u.n",
                       {int_array(ids)});
  std::vector<ChunkInfo> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(chunk_row(r, i));
  return out;
}

std::vector<std::pair<int64_t, Chunk>> PgStore::document_chunks(int64_t doc_id) const {
  const Result r = run(conn_, path_,
                       "SELECT id, text, heading_path, line_start, line_end, page_start, page_end, n_tokens FROM slm_chunks "
                       "WHERE doc_id = $1 ORDER BY ord",
                       {doc_id});
  std::vector<std::pair<int64_t, Chunk>> out;
  for (int i = 0; i < r.rows(); ++i) {
    Chunk c;
    c.text = r.text(i, 1);
    c.heading_path = r.text(i, 2);
    c.line_start = static_cast<int>(r.int64(i, 3));
    c.line_end = static_cast<int>(r.int64(i, 4));
    c.page_start = static_cast<int>(r.int64(i, 5));
    c.page_end = static_cast<int>(r.int64(i, 6));
    c.n_tokens = static_cast<int>(r.int64(i, 7));
    out.emplace_back(r.int64(i, 0), std::move(c));
  }
  return out;
}

int64_t PgStore::chunk_count() const { return run(conn_, path_, "SELECT n_rows FROM slm_totals").int64(0, 0); }

int64_t PgStore::document_frequency(const std::string& term) const {
  return run(conn_, path_, "SELECT count(*) FROM slm_postings WHERE term = $1", {term}).int64(0, 0);
}

void PgStore::refresh_statistics() {
  // VACUUM too: it marks the postings' pages all-visible, without which a search reads every
  // posting's row besides the index (a common word's count: 8.8 ms instead of 1.5).
  run(conn_, path_, "VACUUM (ANALYZE) slm_documents, slm_chunks, slm_postings, slm_embeddings, slm_totals");
}

StoreStats PgStore::stats() const {
  StoreStats s;
  const Result d = run(conn_, path_, "SELECT count(*), coalesce(sum(size), 0) FROM slm_documents");
  s.documents = d.int64(0, 0);
  s.bytes = d.int64(0, 1);
  s.chunks = chunk_count();
  s.models = models();
  s.roots = roots();
  // The index's tables with their indexes and TOAST, in this schema.
  s.file_bytes = run(conn_, path_,
                     "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
                     "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r' "
                     "AND c.relname LIKE 'slm\\_%'")
                     .int64(0, 0);
  return s;
}

std::string PgStore::check() const {
  std::string problems;
  auto count = [&](const char* sql, const char* what) {
    const int64_t n = run(conn_, path_, sql).int64(0, 0);
    if (n) problems += fmt::format("{} {}; ", n, what);
  };
  count("SELECT count(*) FROM slm_chunks c WHERE NOT EXISTS (SELECT 1 FROM slm_documents d WHERE d.id = c.doc_id)",
        "chunks without a document");
  count("SELECT count(*) FROM slm_postings p WHERE NOT EXISTS (SELECT 1 FROM slm_chunks c WHERE c.id = p.chunk_id)",
        "search rows without a chunk");
  // Every chunk's postings add up to its column lengths (a chunk with terms and no postings is
  // missing from the search index).
  count("SELECT count(*) FROM slm_chunks c LEFT JOIN (SELECT chunk_id, sum(tf_text) a, sum(tf_headings) b, "
        "sum(tf_title) t FROM slm_postings GROUP BY chunk_id) p ON p.chunk_id = c.id "
        "WHERE coalesce(p.a, 0) <> c.len_text OR coalesce(p.b, 0) <> c.len_headings OR coalesce(p.t, 0) <> c.len_title",
        "chunks whose search rows do not match their text");
  count("SELECT count(*) FROM slm_postings p JOIN slm_chunks c ON c.id = p.chunk_id JOIN slm_documents d ON d.id = c.doc_id "
        "WHERE p.len_text <> c.len_text OR p.len_headings <> c.len_headings OR p.len_title <> c.len_title "
        "OR p.doc_id <> c.doc_id OR p.lead <> (c.heading_path = d.title)",
        "search rows out of step with their chunk");
  count("SELECT count(*) FROM slm_totals t, (SELECT count(*) n, coalesce(sum(len_text), 0) a, "
        "coalesce(sum(len_headings), 0) b, coalesce(sum(len_title), 0) c FROM slm_chunks) s "
        "WHERE t.n_rows <> s.n OR t.len_text <> s.a OR t.len_headings <> s.b OR t.len_title <> s.c",
        "totals row out of step with the chunks");
  count("SELECT count(*) FROM slm_embeddings e JOIN slm_embed_models m ON m.id = e.model_id "
        "WHERE length(e.vec) <> 4 * m.dim",
        "vectors of the wrong size");
  if (problems.empty()) return "ok";
  problems.resize(problems.size() - 2);
  return problems;
}

}  // namespace slm::rag
