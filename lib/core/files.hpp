// Files and folders written whole or not at all, and positioned reads and
// writes that move every byte asked for.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

namespace turbine {

// Creates the folder `dir` by filling a temporary folder beside it
// (".tmp-<name>", left over from a crash it is replaced) and renaming it when
// `fill` returns; an existing `dir` is refused, and when `fill` throws the
// temporary folder is removed, so `dir` never exists half-written.
void write_folder_atomically(const std::string& dir,
                             const std::function<void(const std::filesystem::path& tmp)>& fill);

// Creates the file `path` by writing `path + ".tmp"` (`write` is given that
// name) and renaming it when `write` returns; when `write` throws the
// temporary file is removed, so `path` is whole or unchanged. An existing
// `path` is replaced: refuse it first where that matters.
void write_file_atomically(const std::string& path,
                           const std::function<void(const std::string& temporary)>& write);

// A file's size and CRC-32 (zlib's) as the disk holds it: read back after
// an fsync, so a checkpoint that lists it is on the disk, not only in the
// page cache. Errors name the file.
struct FileDigest {
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
};
FileDigest digest_file(const std::string& path, bool sync = false);
// fsync of a folder, so the names created or renamed in it last.
void sync_folder(const std::string& dir);
// Bytes an ordinary writer may still use on the file system holding `path`
// (its nearest existing folder).
uint64_t free_bytes(const std::string& path);
// Why writing under `dir` may have failed, for an error message: "the file
// system holding DIR is full (N bytes free)", "... is read-only", "DIR no
// longer exists (deleted while running?)", or "" when none of these holds.
std::string write_failure_cause(const std::string& dir);
// "312.5 KiB": a byte count for people.
std::string human_bytes(double bytes);

// pread / pwrite of exactly `bytes` at `offset` of an open file, retrying
// short transfers and EINTR; errors name `what` (the file), the byte and the
// cause (an unexpected end of file on reads).
void read_exact(int fd, void* out, size_t bytes, uint64_t offset, const std::string& what);
void write_exact(int fd, const void* data, size_t bytes, uint64_t offset, const std::string& what);

}  // namespace turbine
