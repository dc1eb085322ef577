// Files and folders written whole or not at all; exact positioned I/O.
#include "core/files.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.hpp"

namespace fs = std::filesystem;

namespace turbine {

void write_folder_atomically(const std::string& dir,
                             const std::function<void(const fs::path& tmp)>& fill) {
  fs::path final_dir = fs::path(dir).lexically_normal();
  if (final_dir.filename().empty()) final_dir = final_dir.parent_path();  // "out/"
  TURBINE_CHECK(!final_dir.filename().empty(), "'{}' does not name a folder", dir);
  TURBINE_CHECK(!fs::exists(final_dir), "{} exists already: refusing to overwrite it", dir);
  const fs::path tmp = final_dir.parent_path() / (".tmp-" + final_dir.filename().string());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    fill(tmp);
  } catch (...) {
    fs::remove_all(tmp);
    throw;
  }
  fs::rename(tmp, final_dir);
}

void write_file_atomically(const std::string& path,
                           const std::function<void(const std::string& temporary)>& write) {
  const std::string temporary = path + ".tmp";
  try {
    write(temporary);
  } catch (...) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    throw;
  }
  std::error_code error;
  fs::rename(temporary, path, error);
  TURBINE_CHECK(!error, "cannot rename '{}' to '{}': {}", temporary, path, error.message());
}

void read_exact(int fd, void* out, size_t bytes, uint64_t offset, const std::string& what) {
  auto* p = static_cast<char*>(out);
  while (bytes > 0) {
    const ssize_t n = ::pread(fd, p, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    TURBINE_CHECK(n > 0, "{}: read failed at byte {}: {}", what, offset,
                  n == 0 ? "unexpected end of file" : std::strerror(errno));
    p += n;
    bytes -= size_t(n);
    offset += uint64_t(n);
  }
}

void write_exact(int fd, const void* data, size_t bytes, uint64_t offset, const std::string& what) {
  const auto* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::pwrite(fd, p, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    TURBINE_CHECK(n > 0, "{}: write failed at byte {}: {}", what, offset, std::strerror(errno));
    p += n;
    bytes -= size_t(n);
    offset += uint64_t(n);
  }
}

}  // namespace turbine
