// Run output on rank 0: metrics.jsonl (one JSON object per line).
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace turbine::train {

class MetricsWriter {
 public:
  MetricsWriter() = default;
  // Opens <path> for appending; lines of steps after `resume_step` (left by
  // a run that crashed after its last checkpoint) are dropped first.
  MetricsWriter(const std::string& path, int64_t resume_step);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  // NaN becomes null. A failed write (disk full, read-only) throws naming
  // the file, the step, the bytes and the cause; a file deleted while the
  // run writes it is started again with a warning (its earlier lines are
  // lost with it), so the lines from then on are not written into nothing.
  void write(const nlohmann::ordered_json& record);

 private:
  std::string path_;
  FILE* file_ = nullptr;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12s"

}  // namespace turbine::train
