// Rank-aware logging to stderr (info to stdout on rank 0).
#include "core/log.hpp"

#include <cstdio>
#include <mutex>

namespace turbine::log {
namespace {
int g_rank = 0;
int g_world = 1;
Level g_level = Level::info;
bool g_info_to_stderr = false;
std::mutex g_mutex;
}  // namespace

void set_rank(int rank, int world_size) {
  g_rank = rank;
  g_world = world_size;
}
void set_level(Level level) { g_level = level; }
void set_info_to_stderr(bool to_stderr) { g_info_to_stderr = to_stderr; }
int rank() { return g_rank; }

void write(Level level, bool all_ranks, const std::string& text) {
  if (level < g_level) return;
  if (!all_ranks && g_rank != 0) return;
  static const char* names[] = {"debug", "info", "warning", "error"};
  std::lock_guard lock(g_mutex);
  FILE* out = level == Level::info && !g_info_to_stderr ? stdout : stderr;
  // Rank-0 information needs no prefix; what every rank may say does.
  if (g_world > 1 && all_ranks) std::fprintf(out, "[rank %d] ", g_rank);
  if (level != Level::info) std::fprintf(out, "%s: ", names[static_cast<int>(level)]);
  std::fprintf(out, "%s\n", text.c_str());
  std::fflush(out);
}

}  // namespace turbine::log
