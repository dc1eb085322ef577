// Run output on rank 0: metrics.jsonl (one JSON object per line).
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace turbine::train {

// One flat JSON object of numbers and strings.
class JsonLine {
 public:
  JsonLine& add(const std::string& key, double value);
  JsonLine& add(const std::string& key, int64_t value);
  JsonLine& add(const std::string& key, const std::string& value);
  std::string str() const;

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

class MetricsWriter {
 public:
  MetricsWriter() = default;
  // Opens <path> for appending; lines of steps after `resume_step` (left by
  // a run that crashed after its last checkpoint) are dropped first.
  MetricsWriter(const std::string& path, int64_t resume_step);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  void write(const JsonLine& line);

 private:
  FILE* file_ = nullptr;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12s"

}  // namespace turbine::train
