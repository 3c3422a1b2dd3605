// Where tests find the team's reference data: $SLM_SHARED, default <source>/../shared.
// A missing fixture skips loudly, except under CI=true where it fails.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

namespace slm::test {

inline std::filesystem::path shared_dir() {
  if (const char* s = std::getenv("SLM_SHARED"); s && *s) return s;
  return std::filesystem::path(SLM_SOURCE_DIR) / ".." / "shared";
}

inline bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

inline std::string read_text_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace slm::test

// Use at the top of a test: resolves `rel` under the shared dir into `var`, or skips/fails.
#define SLM_REQUIRE_FIXTURE(var, rel)                                                        \
  const std::filesystem::path var = ::slm::test::shared_dir() / (rel);                       \
  if (!std::filesystem::exists(var)) {                                                       \
    if (::slm::test::running_in_ci()) {                                                      \
      FAIL() << "missing fixture " << var << " (CI=true: fixtures are required)";          \
    }                                                                                        \
    std::cerr << "\n*** SKIPPING: fixture " << var                                           \
              << " not found; set SLM_SHARED to the shared/ directory ***\n";                \
    GTEST_SKIP() << "missing fixture " << var;                                               \
  }
