// Files and folders written whole or not at all; exact positioned I/O.
#include "core/files.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <vector>

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

FileDigest digest_file(const std::string& path, bool sync) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TURBINE_CHECK(fd >= 0, "cannot open {}: {}", path, std::strerror(errno));
  FileDigest digest;
  try {
    TURBINE_CHECK(!sync || ::fsync(fd) == 0, "{}: fsync failed: {}", path, std::strerror(errno));
    std::vector<unsigned char> buffer(size_t(1) << 20);
    uLong crc = crc32(0L, Z_NULL, 0);
    while (true) {
      const ssize_t n = ::read(fd, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      TURBINE_CHECK(n >= 0, "{}: read failed: {}", path, std::strerror(errno));
      if (n == 0) break;
      crc = crc32(crc, buffer.data(), uInt(n));
      digest.bytes += uint64_t(n);
    }
    digest.crc32 = uint32_t(crc);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return digest;
}

void sync_folder(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  TURBINE_CHECK(fd >= 0, "cannot open folder {}: {}", dir, std::strerror(errno));
  const int status = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  TURBINE_CHECK(status == 0 || error == EINVAL, "{}: fsync failed: {}", dir, std::strerror(error));
}

namespace {
// The nearest existing folder at or above `path`.
fs::path existing_folder(fs::path path) {
  std::error_code ignored;
  path = fs::absolute(path, ignored);
  while (!path.empty() && !fs::is_directory(path, ignored) && path != path.root_path())
    path = path.parent_path();
  return path;
}
}  // namespace

uint64_t free_bytes(const std::string& path) {
  struct statvfs info {};
  if (::statvfs(existing_folder(path).c_str(), &info) != 0) return UINT64_MAX;
  return uint64_t(info.f_bavail) * uint64_t(info.f_frsize);
}

std::string write_failure_cause(const std::string& dir) {
  std::error_code ignored;
  if (!fs::is_directory(dir, ignored))
    return fmt::format("{} no longer exists (deleted while running?)", dir);
  struct statvfs info {};
  if (::statvfs(dir.c_str(), &info) != 0) return "";
  if (info.f_flag & ST_RDONLY) return fmt::format("the file system holding {} is read-only", dir);
  const uint64_t free = uint64_t(info.f_bavail) * uint64_t(info.f_frsize);
  // A write fails with a few blocks left (metadata, reserved blocks).
  if (free < 64 * uint64_t(info.f_frsize))
    return fmt::format("the file system holding {} is full ({} free)", dir,
                       human_bytes(double(free)));
  if (::access(dir.c_str(), W_OK) != 0)
    return fmt::format("{} is not writable: {}", dir, std::strerror(errno));
  return "";
}

std::string human_bytes(double bytes) {
  if (bytes < 1024) return fmt::format("{:.0f} bytes", bytes);
  if (bytes < 1024.0 * 1024) return fmt::format("{:.1f} KiB", bytes / 1024);
  if (bytes < 1024.0 * 1024 * 1024) return fmt::format("{:.1f} MiB", bytes / (1024.0 * 1024));
  return fmt::format("{:.2f} GiB", bytes / (1024.0 * 1024 * 1024));
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
