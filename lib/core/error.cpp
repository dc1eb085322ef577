// Error construction: appends the source location to the user-facing message.
#include "core/error.hpp"

#include <cstring>

namespace turbine {

void throw_error(const char* file, int line, const std::string& message) {
  const char* base = std::strstr(file, "lib/");
  if (base == nullptr) base = std::strstr(file, "kernels/");
  if (base == nullptr) base = file;
  throw Error(fmt::format("{} [{}:{}]", message, base, line));
}

}  // namespace turbine
