// Files and folders written whole or not at all.
#include "core/files.hpp"

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

}  // namespace turbine
