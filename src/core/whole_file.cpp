#include "core/whole_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace slm {

bool try_read_whole_file(const std::string& path, std::string& out, std::string& why) {
  out.clear();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    why = std::string("cannot open: ") + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    why = std::string("cannot stat: ") + std::strerror(errno);
    ::close(fd);
    return false;
  }
  if (S_ISDIR(st.st_mode)) {
    why = "is a directory, not a file";
    ::close(fd);
    return false;
  }
  // Regular files are read in one call of their size; pipes and devices until end of file.
  size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? static_cast<size_t>(st.st_size) + 1 : 64 * 1024;
  out.resize(cap);
  size_t have = 0;
  for (;;) {
    if (have == out.size()) out.resize(out.size() * 2);
    const ssize_t n = ::read(fd, out.data() + have, out.size() - have);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      why = std::string("read failed: ") + std::strerror(errno);
      ::close(fd);
      out.clear();
      return false;
    }
    have += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(have);
  return true;
}

std::string read_whole_file(const std::string& path, std::string_view what) {
  std::string out, why;
  if (!try_read_whole_file(path, out, why)) fail("cannot read the {} {}: {}", what, path, why);
  return out;
}

}  // namespace slm
