// Rank-aware logging: lines are prefixed with the MPI rank once one is set,
// and info() prints on rank 0 only unless asked otherwise.
#pragma once

#include <fmt/format.h>

#include <string>

namespace turbine::log {

enum class Level { debug, info, warn, error };

void set_rank(int rank, int world_size);
void set_level(Level level);
// Sends info lines to stderr too, for an app whose stdout is its output
// (infer generate's text).
void set_info_to_stderr(bool to_stderr);
int rank();
void write(Level level, bool all_ranks, const std::string& text);

template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::info, false, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::warn, true, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::error, true, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::debug, true, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace turbine::log
