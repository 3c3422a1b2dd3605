// A temporary folder per test program, named after the program and its pid, removed when the
// program ends (tests that convert models leave ~100-200 MB there).
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace slm::test {

class ProgramTempDir {
 public:
  explicit ProgramTempDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() / ("slm-test-" + name + "-" + std::to_string(::getpid()))) {}
  ~ProgramTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  // The folder, created on first use.
  const std::filesystem::path& path() const {
    std::filesystem::create_directories(path_);
    return path_;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace slm::test
