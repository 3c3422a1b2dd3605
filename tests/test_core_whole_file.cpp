// Reading whole files (core/whole_file.h): the bytes as they are (NULs, no newline
// translation), empty files, pipes longer than the first read buffer, and a clear refusal of a
// missing path or a directory (std::ifstream opens a directory and reads it as zero bytes).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "core/error.h"
#include "core/whole_file.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;

slm::test::ProgramTempDir g_dir("core-whole-file");

void write_bytes(const fs::path& p, const std::string& bytes) {
  FILE* f = std::fopen(p.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  std::fclose(f);
}

TEST(WholeFile, ReadsEveryByteAsStored) {
  std::string bytes("a\r\nb\0c\xff", 7);
  for (int i = 0; i < 100000; ++i) bytes.push_back(static_cast<char>(i * 31));
  const fs::path p = g_dir.path() / "bytes.bin";
  write_bytes(p, bytes);
  EXPECT_EQ(slm::read_whole_file(p.string(), "test file"), bytes);
  const fs::path e = g_dir.path() / "empty.txt";
  write_bytes(e, "");
  std::string out = "stale", why;
  EXPECT_TRUE(slm::try_read_whole_file(e.string(), out, why)) << why;
  EXPECT_EQ(out, "");
}

TEST(WholeFile, ReadsAPipeToItsEnd) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::string sent;
  for (int i = 0; i < 300000; ++i) sent.push_back(static_cast<char>('a' + i % 26));
  std::thread writer([&] {
    size_t off = 0;
    while (off < sent.size()) {
      const ssize_t n = write(fds[1], sent.data() + off, sent.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    close(fds[1]);
  });
  const std::string got = slm::read_whole_file("/dev/fd/" + std::to_string(fds[0]), "pipe");
  writer.join();
  close(fds[0]);
  EXPECT_EQ(got.size(), sent.size());
  EXPECT_TRUE(got == sent);
}

TEST(WholeFile, MissingFileAndDirectoryAreClearErrors) {
  std::string out, why;
  EXPECT_FALSE(slm::try_read_whole_file((g_dir.path() / "missing.txt").string(), out, why));
  EXPECT_NE(why.find("cannot open"), std::string::npos) << why;
  EXPECT_NE(why.find("No such file"), std::string::npos) << why;
  EXPECT_FALSE(slm::try_read_whole_file(g_dir.path().string(), out, why));
  EXPECT_NE(why.find("is a directory"), std::string::npos) << why;
  try {
    slm::read_whole_file(g_dir.path().string(), "chat template file");
    FAIL() << "a directory was read as a file";
  } catch (const slm::Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "cannot read the chat template file " + g_dir.path().string() + ": is a directory, not a file");
  }
}

}  // namespace
