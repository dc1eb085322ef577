// Errors: one exception type whose message says what went wrong, where, and
// what to do. TURBINE_CHECK(cond, fmt, args...) throws it with file and line.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace turbine {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message), message_(message) {}
  // what() is the message and, from TURBINE_CHECK, " [file:line]"; message()
  // is the message alone, for answers to a remote user (an HTTP 400).
  Error(const std::string& message, const std::string& where)
      : std::runtime_error(where.empty() ? message : message + " [" + where + "]"),
        message_(message) {}
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

// An error thrown on every rank of a job together (each knows the others
// stop too), so the job ends in order with exit status 1 instead of an
// MPI_Abort. `echo`: false on the ranks whose message would only repeat
// what another rank reports.
class CollectiveError : public Error {
 public:
  explicit CollectiveError(const std::string& message, bool echo = true)
      : Error(message), echo_(echo) {}
  bool echo() const { return echo_; }

 private:
  bool echo_;
};

[[noreturn]] void throw_error(const char* file, int line, const std::string& message);

}  // namespace turbine

#define TURBINE_CHECK(cond, ...)                                                       \
  do {                                                                                 \
    if (!(cond)) ::turbine::throw_error(__FILE__, __LINE__, fmt::format(__VA_ARGS__)); \
  } while (0)

#define TURBINE_FAIL(...) ::turbine::throw_error(__FILE__, __LINE__, fmt::format(__VA_ARGS__))
