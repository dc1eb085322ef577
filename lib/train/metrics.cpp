// Metrics file and progress line.
#include "train/metrics.hpp"

#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include <fmt/format.h>

namespace turbine::train {

namespace {
std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", int(c));
    } else {
      out += c;
    }
  }
  return out;
}
}  // namespace

JsonLine& JsonLine::add(const std::string& key, double value) {
  fields_.emplace_back(key, std::isfinite(value) ? fmt::format("{:.9g}", value) : "null");
  return *this;
}
JsonLine& JsonLine::add(const std::string& key, int64_t value) {
  fields_.emplace_back(key, std::to_string(value));
  return *this;
}
JsonLine& JsonLine::add(const std::string& key, const std::string& value) {
  std::string quoted(1, '"');
  quoted.append(json_escape(value)).push_back('"');
  fields_.emplace_back(key, std::move(quoted));
  return *this;
}

std::string JsonLine::str() const {
  std::string out = "{";
  for (size_t i = 0; i < fields_.size(); ++i) {
    if (i > 0) out.append(", ");
    out.append("\"").append(json_escape(fields_[i].first)).append("\": ");
    out.append(fields_[i].second);
  }
  out.append("}");
  return out;
}

MetricsWriter::MetricsWriter(const std::string& path, int64_t resume_step) {
  std::vector<std::string> kept;
  {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      const auto at = line.find("\"step\": ");
      if (at == std::string::npos) continue;
      if (std::atoll(line.c_str() + at + 8) <= resume_step) kept.push_back(line);
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

void MetricsWriter::write(const JsonLine& line) {
  if (!file_) return;
  std::fprintf(file_, "%s\n", line.str().c_str());
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
