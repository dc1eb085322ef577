// Metrics file and progress line.
#include "train/metrics.hpp"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.hpp"

namespace turbine::train {

MetricsWriter::MetricsWriter(const std::string& path, int64_t resume_step) {
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
  TURBINE_CHECK(file_ != nullptr, "cannot write metrics file '{}'", path);
  for (const auto& line : kept) std::fprintf(file_, "%s\n", line.c_str());
  std::fflush(file_);
}

MetricsWriter::~MetricsWriter() {
  if (file_) std::fclose(file_);
}

void MetricsWriter::write(const nlohmann::ordered_json& record) {
  if (!file_) return;
  std::fprintf(file_, "%s\n", record.dump().c_str());
  std::fflush(file_);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

}  // namespace turbine::train
