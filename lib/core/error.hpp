// Errors: one exception type whose message says what went wrong, where, and
// what to do. TURBINE_CHECK(cond, fmt, args...) throws it with file and line.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace turbine {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

[[noreturn]] void throw_error(const char* file, int line, const std::string& message);

}  // namespace turbine

#define TURBINE_CHECK(cond, ...)                                                  \
  do {                                                                            \
    if (!(cond)) ::turbine::throw_error(__FILE__, __LINE__, fmt::format(__VA_ARGS__)); \
  } while (0)

#define TURBINE_FAIL(...) ::turbine::throw_error(__FILE__, __LINE__, fmt::format(__VA_ARGS__))
