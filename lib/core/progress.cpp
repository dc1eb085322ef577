// Progress line output.
#include "core/progress.hpp"

#include <unistd.h>

namespace turbine {

ProgressLine::ProgressLine(FILE* stream, bool enabled, bool allow_redraw)
    : stream_(stream), enabled_(enabled), terminal_(allow_redraw && isatty(fileno(stream)) == 1) {}

void ProgressLine::show(const std::string& text, bool due, bool last) {
  if (!enabled_) return;
  if (terminal_) {
    if (!last && open_ && since_.seconds() < 0.2) return;
    since_.reset();
    std::fprintf(stream_, "\r\033[K%s", text.c_str());
    open_ = true;
    if (last) break_line();
  } else if (due || last) {
    std::fprintf(stream_, "%s\n", text.c_str());
  }
  std::fflush(stream_);
}

void ProgressLine::break_line() {
  if (open_) std::fprintf(stream_, "\n");
  open_ = false;
  std::fflush(stream_);
}

}  // namespace turbine
