// Prometheus metrics of `infer serve` (GET /metrics, text exposition format
// 0.0.4): counters, gauges and histograms, updated from the HTTP threads and
// the engine loop at once (thread-safe), rendered on demand.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace turbine::infer {

class Metrics {
 public:
  // Families are declared once, before use; `name` is the full metric name
  // ("turbine_requests_total"), `help` its # HELP line. Histograms take
  // their bucket upper bounds in increasing order (+Inf is added).
  void counter(const std::string& name, const std::string& help);
  void gauge(const std::string& name, const std::string& help);
  void histogram(const std::string& name, const std::string& help, std::vector<double> buckets);

  // Updates. `labels` is the label set as Prometheus writes it inside the
  // braces, e.g. R"(outcome="ok")", or "" for none; each distinct label set
  // is its own series, rendered from its first update on (add(name, 0) shows
  // a counter at 0 before anything happened). Unknown names, a kind mismatch
  // or a negative add throw turbine::Error.
  void add(const std::string& name, double value, const std::string& labels = "");      // counter
  void set(const std::string& name, double value, const std::string& labels = "");      // gauge
  void observe(const std::string& name, double value, const std::string& labels = "");  // histogram

  // A series' current value (counter or gauge; a histogram's count), 0 when
  // it has none yet: for tests and logs.
  double value(const std::string& name, const std::string& labels = "") const;

  // Every family in declaration order: "# HELP", "# TYPE", then its series
  // (histograms as _bucket{le="..."} cumulative counts, _sum and _count).
  std::string render() const;

 private:
  struct Series {
    double value = 0;              // counter, gauge
    std::vector<uint64_t> counts;  // histogram: per bucket (not cumulative), +Inf last
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    std::string name, help, type;  // type: counter, gauge, histogram
    std::vector<double> buckets;
    std::map<std::string, Series> series;  // by label set
  };
  Family& find(const std::string& name, const char* type);
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Family>> families_;
};

// Latency buckets in seconds for time to first token and per-token latency:
// 1 ms to 60 s, roughly x2.5 apart.
std::vector<double> latency_buckets();

}  // namespace turbine::infer
