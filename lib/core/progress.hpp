// A human progress line. On a terminal it redraws in place (at most five
// times a second); otherwise it prints plain lines only when the caller says
// one is due (every N steps, every N seconds), and always the last one.
// Under mpirun the ranks' output is often a pseudo-terminal even when
// mpirun's own goes to a file, so callers pass allow_redraw = false there.
#pragma once

#include <cstdio>
#include <string>

#include "core/timer.hpp"

namespace turbine {

class ProgressLine {
 public:
  ProgressLine(FILE* stream, bool enabled, bool allow_redraw);
  // Shows `text`: redrawn on a terminal; as a plain line when `due` or `last`.
  void show(const std::string& text, bool due, bool last = false);
  // Ends a redrawn line so that other output starts on a fresh one.
  void break_line();
  bool redraws() const { return terminal_; }

 private:
  FILE* stream_;
  bool enabled_, terminal_;
  bool open_ = false;
  Timer since_;
};

}  // namespace turbine
