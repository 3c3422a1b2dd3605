// A real PostgreSQL server for the tests of the PostgreSQL index: SLM_TEST_POSTGRES_URL when set
// (a server someone runs; each test makes its own schema there), else a private one started from
// Debian's postgresql package (initdb into a temporary folder, listening only on a Unix socket in
// it, so that parallel tests never meet), stopped and removed when the test program ends.
// As root, the server runs as the `postgres` user, since PostgreSQL refuses to run as root.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "support/fixtures.h"

namespace slm::test {

class TestPostgres {
 public:
  // The server for this test program, started on first use; null with `why_not` said when it
  // cannot be had (no PostgreSQL installed, or it failed to start).
  static TestPostgres* get(std::string& why_not) {
    static std::unique_ptr<TestPostgres> server;
    static std::string failure;
    static bool tried = false;
    if (!tried) {
      tried = true;
      server.reset(new TestPostgres());
      if (!server->start(failure)) server.reset();
    }
    why_not = failure;
    return server.get();
  }

  ~TestPostgres() {
    if (!data_.empty()) as_server_user(bin_ + "/pg_ctl -D " + data_ + " -m immediate stop >/dev/null 2>&1");
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  // A libpq URL for `schema` (created now, empty) in the server's database.
  std::string url_for_schema(const std::string& schema) {
    sql("SET client_min_messages = warning; DROP SCHEMA IF EXISTS " + schema + " CASCADE; CREATE SCHEMA " + schema);
    return base_url_ + (base_url_.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + schema;
  }
  const std::string& base_url() const { return base_url_; }

  // Runs SQL through psql; true when it succeeded.
  bool sql(const std::string& statements) {
    const std::string cmd = "psql -X -q -v ON_ERROR_STOP=1 \"" + base_url_ + "\" -c \"" + statements + "\" >/dev/null";
    return std::system(cmd.c_str()) == 0;
  }

 private:
  TestPostgres() = default;

  int as_server_user(const std::string& cmd) const {
    const std::string full = root_ ? "runuser -u postgres -- sh -c '" + cmd + "'" : cmd;
    return std::system(full.c_str());
  }

  bool start(std::string& why_not) {
    if (const char* u = std::getenv("SLM_TEST_POSTGRES_URL"); u && *u) {
      base_url_ = u;
      return true;
    }
    for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ignore_))
      if (std::filesystem::exists(e.path() / "bin" / "initdb") && e.path().string() + "/bin" > bin_)
        bin_ = e.path().string() + "/bin";
    if (bin_.empty()) {
      why_not = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; scripts/install-deps.sh installs it)";
      return false;
    }
    root_ = ::geteuid() == 0;
    dir_ = (std::filesystem::temp_directory_path() / ("slm-test-pg-" + std::to_string(::getpid()))).string();
    std::filesystem::remove_all(dir_, ignore_);
    std::filesystem::create_directories(dir_);
    if (root_ && std::system(("chown postgres " + dir_).c_str()) != 0) {
      why_not = "running as root, and there is no postgres user to run the server as";
      return false;
    }
    const std::string log = dir_ + "/server.log";
    if (as_server_user(bin_ + "/initdb -D " + dir_ + "/data -A trust -U slm -E UTF8 --locale=C.UTF-8 --no-sync >" + log +
                       " 2>&1") != 0) {
      why_not = "initdb failed (see " + log + ")";
      return false;
    }
    data_ = dir_ + "/data";
    if (as_server_user(bin_ + "/pg_ctl -D " + data_ + " -w -t 60 -l " + log + " -o \"-k " + dir_ +
                       " -c listen_addresses= -p 5432 -c fsync=off -c synchronous_commit=off\" start >/dev/null") != 0) {
      why_not = "the server did not start (see " + log + ")";
      return false;
    }
    base_url_ = "postgresql:///postgres?host=" + dir_ + "&port=5432&user=slm";
    return true;
  }

  std::error_code ignore_;
  std::string bin_, dir_, data_, base_url_;
  bool root_ = false;
};

}  // namespace slm::test

// Use at the top of a test: a running server in `var` (TestPostgres*), or skip loudly (fail
// under CI=true, where install-deps.sh has installed PostgreSQL).
#define SLM_REQUIRE_POSTGRES(var)                                                            \
  std::string var##_why;                                                                   \
  ::slm::test::TestPostgres* var = ::slm::test::TestPostgres::get(var##_why);              \
  if (!var) {                                                                              \
    if (::slm::test::running_in_ci()) FAIL() << "no PostgreSQL for the test: " << var##_why; \
    std::cerr << "\n*** SKIPPING: no PostgreSQL: " << var##_why << " ***\n";              \
    GTEST_SKIP() << var##_why;                                                             \
  }
