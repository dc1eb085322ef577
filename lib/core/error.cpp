// Error construction: appends the source location to the user-facing message.
#include "core/error.hpp"

#include <cstring>

namespace turbine {

void throw_error(const char* file, int line, const std::string& message) {
  // The path from the source root: lib/..., kernels/..., apps/...
  const char* base = file;
  for (const char* root : {"lib/", "kernels/", "apps/", "tests/"}) {
    if (const char* at = std::strstr(file, root)) {
      base = at;
      break;
    }
  }
  throw Error(message, fmt::format("{}:{}", base, line));
}

}  // namespace turbine
