// Prometheus metrics of `infer serve` (infer/metrics.hpp): a registry of
// families under one mutex, rendered in the text exposition format 0.0.4.
#include "infer/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/error.hpp"

namespace turbine::infer {

namespace {

// A number as Prometheus parses it: integral values without an exponent or
// a fraction ("3", not "3.0" or "3e0"), others in their shortest exact form,
// and +Inf, -Inf, NaN by name.
std::string format_number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::abs(value) < 1e15)
    return fmt::format("{:.0f}", value == 0 ? 0.0 : value);  // no "-0"
  return fmt::format("{}", value);
}

// HELP text escapes backslashes and newlines.
std::string escape_help(const std::string& help) {
  std::string out;
  for (const char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

bool valid_name(const std::string& name) {
  const auto first = [](char c) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
  };
  return !name.empty() && first(name[0]) &&
         std::all_of(name.begin() + 1, name.end(), [&first](char c) {
           return first(c) || std::isdigit(static_cast<unsigned char>(c));
         });
}

// One sample line: name{labels} value (no braces for no labels).
void append_sample(std::string& out, const std::string& name, const std::string& labels,
                   double value) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  out += ' ';
  out += format_number(value);
  out += '\n';
}

// The family called `name` in `families` (a vector of unique_ptr<Family>), or null.
template <typename Families>
auto* find_family(Families& families, const std::string& name) {
  const auto it = std::find_if(families.begin(), families.end(),
                               [&name](const auto& family) { return family->name == name; });
  return it == families.end() ? nullptr : it->get();
}

// Adds a family to `families` (a vector of unique_ptr<Family>).
template <typename Families>
void declare(Families& families, const std::string& name, const std::string& help, const char* type,
             std::vector<double> buckets) {
  TURBINE_CHECK(valid_name(name), "metric name '{}' is not a valid Prometheus name", name);
  TURBINE_CHECK(!find_family(families, name), "metric {} is declared twice", name);
  for (size_t b = 0; b < buckets.size(); ++b)
    TURBINE_CHECK(std::isfinite(buckets[b]) && (b == 0 || buckets[b] > buckets[b - 1]),
                  "histogram {}: bucket bounds must be finite and increasing (+Inf is added)",
                  name);
  auto family = std::make_unique<typename Families::value_type::element_type>();
  family->name = name;
  family->help = help;
  family->type = type;
  family->buckets = std::move(buckets);
  families.push_back(std::move(family));
}

}  // namespace

void Metrics::counter(const std::string& name, const std::string& help) {
  std::lock_guard lock(mutex_);
  declare(families_, name, help, "counter", {});
}

void Metrics::gauge(const std::string& name, const std::string& help) {
  std::lock_guard lock(mutex_);
  declare(families_, name, help, "gauge", {});
}

void Metrics::histogram(const std::string& name, const std::string& help,
                        std::vector<double> buckets) {
  std::lock_guard lock(mutex_);
  declare(families_, name, help, "histogram", std::move(buckets));
}

Metrics::Family& Metrics::find(const std::string& name, const char* type) {
  Family* family = find_family(families_, name);
  TURBINE_CHECK(family, "metric {} was never declared; declare it before updating it", name);
  TURBINE_CHECK(family->type == type, "metric {} is a {}, not a {}", name, family->type, type);
  return *family;
}

void Metrics::add(const std::string& name, double value, const std::string& labels) {
  TURBINE_CHECK(value >= 0, "counter {} can only go up, but {} was added", name, value);
  std::lock_guard lock(mutex_);
  find(name, "counter").series[labels].value += value;
}

void Metrics::set(const std::string& name, double value, const std::string& labels) {
  std::lock_guard lock(mutex_);
  find(name, "gauge").series[labels].value = value;
}

void Metrics::observe(const std::string& name, double value, const std::string& labels) {
  std::lock_guard lock(mutex_);
  Family& family = find(name, "histogram");
  Series& series = family.series[labels];
  if (series.counts.empty()) series.counts.assign(family.buckets.size() + 1, 0);
  // The first bucket whose upper bound holds the value (le: less or equal);
  // NaN holds in none but +Inf.
  const size_t bucket =
      std::isnan(value)
          ? family.buckets.size()
          : size_t(std::lower_bound(family.buckets.begin(), family.buckets.end(), value) -
                   family.buckets.begin());
  ++series.counts[bucket];
  series.sum += value;
  ++series.count;
}

double Metrics::value(const std::string& name, const std::string& labels) const {
  std::lock_guard lock(mutex_);
  const Family* family = find_family(families_, name);
  TURBINE_CHECK(family, "metric {} was never declared", name);
  const auto it = family->series.find(labels);
  if (it == family->series.end()) return 0;
  return family->type == "histogram" ? double(it->second.count) : it->second.value;
}

std::string Metrics::render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& family : families_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", family->name, escape_help(family->help),
                       family->name, family->type);
    for (const auto& [labels, series] : family->series) {
      if (family->type != "histogram") {
        append_sample(out, family->name, labels, series.value);
        continue;
      }
      const std::string prefix = labels.empty() ? "" : labels + ",";
      uint64_t cumulative = 0;
      for (size_t b = 0; b < series.counts.size(); ++b) {
        cumulative += series.counts[b];
        const double bound = b < family->buckets.size() ? family->buckets[b] : INFINITY;
        append_sample(out, family->name + "_bucket",
                      fmt::format("{}le=\"{}\"", prefix, format_number(bound)), double(cumulative));
      }
      append_sample(out, family->name + "_sum", labels, series.sum);
      append_sample(out, family->name + "_count", labels, double(series.count));
    }
  }
  return out;
}

std::vector<double> latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60};
}

}  // namespace turbine::infer
