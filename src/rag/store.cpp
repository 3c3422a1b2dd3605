// See store.h: which kind of store a --db names.
#include "rag/store.h"

#include "rag/store_pg.h"
#include "rag/store_sqlite.h"

namespace slm::rag {

bool is_postgres_url(const std::string& where) {
  return where.rfind("postgresql://", 0) == 0 || where.rfind("postgres://", 0) == 0;
}

std::unique_ptr<Store> open_store(const std::string& where, bool create) {
  if (is_postgres_url(where)) return std::make_unique<PgStore>(where, create);
  return std::make_unique<SqliteStore>(where, create);
}

}  // namespace slm::rag
