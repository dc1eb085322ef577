// Files and folders written whole or not at all.
#pragma once

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

}  // namespace turbine
