// Metrics file and progress line.
#include "train/metrics.hpp"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/log.hpp"

namespace fs = std::filesystem;

namespace turbine::train {

MetricsWriter::MetricsWriter(const std::string& path, int64_t resume_step) : path_(path) {
  std::vector<std::string> kept;
  {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (record.is_object() && record.contains("step") && record["step"].is_number_integer() &&
          record["step"].get<int64_t>() <= resume_step)
        kept.push_back(line);  // a torn last line from a crash fails to parse and is dropped
    }
  }
  file_ = std::fopen(path.c_str(), "w");
  TURBINE_CHECK(file_ != nullptr, "cannot write metrics file '{}': {}", path, std::strerror(errno));
  bool ok = true;
  for (const auto& line : kept) ok &= std::fprintf(file_, "%s\n", line.c_str()) > 0;
  ok &= std::fflush(file_) == 0;
  TURBINE_CHECK(ok, "{}: rewriting the metrics kept for resume failed: {}{}", path,
                std::strerror(errno), [&] {
                  const std::string cause =
                      write_failure_cause(fs::path(path).parent_path().string());
                  return cause.empty() ? std::string() : " (" + cause + ")";
                }());
}

MetricsWriter::~MetricsWriter() {
  if (file_) std::fclose(file_);
}

void MetricsWriter::write(const nlohmann::ordered_json& record) {
  if (!file_) return;
  struct stat info {};
  if (::fstat(::fileno(file_), &info) == 0 && info.st_nlink == 0) {
    log::warn(
        "{} was deleted while the run was writing it: starting it again at step {} (the "
        "lines before are lost)",
        path_, record.value("step", int64_t(-1)));
    std::fclose(file_);
    std::error_code ignored;
    fs::create_directories(fs::path(path_).parent_path(), ignored);
    file_ = std::fopen(path_.c_str(), "w");
    TURBINE_CHECK(file_ != nullptr, "cannot write metrics file '{}' again: {}", path_,
                  std::strerror(errno));
  }
  const bool ok = std::fprintf(file_, "%s\n", record.dump().c_str()) > 0 && std::fflush(file_) == 0;
  if (ok) return;
  const std::string why = std::strerror(errno);
  const std::string cause = write_failure_cause(fs::path(path_).parent_path().string());
  std::fclose(file_);
  file_ = nullptr;
  TURBINE_FAIL("{}: writing step {}'s metrics ({} bytes) failed: {}{}", path_,
               record.value("step", int64_t(-1)), record.dump().size() + 1, why,
               cause.empty() ? "" : " (" + cause + ")");
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

}  // namespace turbine::train
