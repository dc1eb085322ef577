// The client population of population.hpp.
#include "fl/population.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace turbine::fl {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream in(line);
  for (std::string cell; std::getline(in, cell, ',');) cells.push_back(trim(cell));
  if (!line.empty() && line.back() == ',') cells.push_back("");
  return cells;
}

}  // namespace

double ClientProfile::communication_seconds(int64_t bytes) const {
  if (bandwidth_mbps <= 0) return 0;
  return 2.0 * double(bytes) * 8.0 / (bandwidth_mbps * 1e6);  // down and up
}

int64_t CsvTable::column(const std::string& name) const {
  const auto it = std::find(columns.begin(), columns.end(), name);
  return it == columns.end() ? -1 : int64_t(it - columns.begin());
}

CsvTable read_csv(const std::string& path, const std::vector<std::string>& required,
                  const std::vector<std::string>& optional) {
  std::ifstream in(path);
  TURBINE_CHECK(in, "{}: cannot open the trace", path);
  CsvTable t;
  int64_t number = 0;
  for (std::string raw; std::getline(in, raw);) {
    ++number;
    const std::string line = trim(raw.substr(0, raw.find('#')));
    if (line.empty()) continue;
    const auto cells = split(line);
    if (t.columns.empty()) {
      t.columns = cells;
      for (const std::string& c : t.columns) {
        const bool known = std::count(required.begin(), required.end(), c) +
                               std::count(optional.begin(), optional.end(), c) >
                           0;
        TURBINE_CHECK(known, "{}:{}: unknown column '{}' (known: {}{}{})", path, number, c,
                      fmt::join(required, ", "), optional.empty() ? "" : ", ",
                      fmt::join(optional, ", "));
        TURBINE_CHECK(std::count(t.columns.begin(), t.columns.end(), c) == 1,
                      "{}:{}: column '{}' appears twice", path, number, c);
      }
      for (const std::string& c : required)
        TURBINE_CHECK(t.column(c) >= 0, "{}:{}: the header lacks the column '{}' (it has: {})",
                      path, number, c, fmt::join(t.columns, ", "));
      continue;
    }
    TURBINE_CHECK(cells.size() == t.columns.size(), "{}:{}: {} values for {} columns ({})", path,
                  number, cells.size(), t.columns.size(), fmt::join(t.columns, ", "));
    std::vector<double> row;
    for (size_t i = 0; i < cells.size(); ++i) {
      size_t used = 0;
      double value = 0;
      try {
        value = std::stod(cells[i], &used);
      } catch (const std::exception&) {
        used = 0;
      }
      TURBINE_CHECK(used == cells[i].size() && !cells[i].empty() && std::isfinite(value),
                    "{}:{}: column '{}' holds '{}', not a number", path, number, t.columns[i],
                    cells[i]);
      row.push_back(value);
    }
    t.rows.push_back(std::move(row));
    t.lines.push_back(number);
  }
  TURBINE_CHECK(!t.columns.empty(), "{}: empty trace (a header row and data rows expected)", path);
  TURBINE_CHECK(!t.rows.empty(), "{}: the trace has a header but no rows", path);
  return t;
}

Population::Population(const PopulationConfig& config) : config_(config) {
  const PopulationConfig& c = config_;
  TURBINE_CHECK(c.clients >= 1, "population: {} clients", c.clients);
  profiles_.resize(size_t(c.clients));
  if (!c.device_trace.empty()) {
    const CsvTable t = read_csv(c.device_trace, {"compute"},
                                {"memory_mb", "bandwidth_mbps", "batch_size", "local_steps"});
    std::vector<ClientProfile> devices;
    for (size_t r = 0; r < t.rows.size(); ++r) {
      auto get = [&](const char* name) {
        const int64_t i = t.column(name);
        return i < 0 ? 0.0 : t.rows[r][size_t(i)];
      };
      ClientProfile p;
      p.compute = get("compute");
      p.memory_mb = get("memory_mb");
      p.bandwidth_mbps = get("bandwidth_mbps");
      p.batch_size = int64_t(get("batch_size"));
      p.local_steps = int64_t(get("local_steps"));
      const std::string where = fmt::format("{}:{}", c.device_trace, t.lines[r]);
      TURBINE_CHECK(p.compute > 0 && p.compute <= 1,
                    "{}: compute {} is a share of a worker and must be in (0, 1]", where,
                    p.compute);
      TURBINE_CHECK(
          p.memory_mb >= 0 && p.bandwidth_mbps >= 0 && p.batch_size >= 0 && p.local_steps >= 0,
          "{}: memory_mb, bandwidth_mbps, batch_size and local_steps must not be "
          "negative",
          where);
      devices.push_back(p);
    }
    for (int64_t i = 0; i < c.clients; ++i)
      profiles_[size_t(i)] = devices[size_t(i) % devices.size()];
  } else {
    TURBINE_CHECK(!c.compute.empty(), "devices.compute: at least one compute share");
    for (double s : c.compute)
      TURBINE_CHECK(s > 0 && s <= 1,
                    "devices.compute: {} is a share of a worker and must be in (0, 1]", s);
    std::vector<double> weights = c.compute_weights;
    if (weights.empty()) weights.assign(c.compute.size(), 1.0);
    TURBINE_CHECK(weights.size() == c.compute.size(),
                  "devices.compute_weights: {} weights for {} compute tiers", weights.size(),
                  c.compute.size());
    double total = 0;
    for (double w : weights) {
      TURBINE_CHECK(w >= 0, "devices.compute_weights: negative weight {}", w);
      total += w;
    }
    TURBINE_CHECK(total > 0, "devices.compute_weights: the weights sum to 0");
    TURBINE_CHECK(c.bandwidth_lo >= 0 && c.bandwidth_hi >= c.bandwidth_lo &&
                      (c.bandwidth_lo > 0 || c.bandwidth_hi == 0),
                  "devices.bandwidth_mbps: [{}, {}] must be [lo, hi] with 0 < lo <= hi, or [0, 0]",
                  c.bandwidth_lo, c.bandwidth_hi);
    for (double m : c.memory_mb) TURBINE_CHECK(m >= 0, "devices.memory_mb: negative cap {}", m);
    for (int64_t i = 0; i < c.clients; ++i) {
      ClientProfile& p = profiles_[size_t(i)];
      double draw = philox_unit(c.seed, 0xde1ce, uint64_t(i) * 4) * total;
      size_t tier = 0;
      while (tier + 1 < weights.size() && draw >= weights[tier]) draw -= weights[tier++];
      p.compute = c.compute[tier];
      if (!c.memory_mb.empty())
        p.memory_mb = c.memory_mb[size_t(philox_unit(c.seed, 0xde1ce, uint64_t(i) * 4 + 1) *
                                         double(c.memory_mb.size()))];
      if (c.bandwidth_hi > 0)
        p.bandwidth_mbps =
            c.bandwidth_lo * std::pow(c.bandwidth_hi / c.bandwidth_lo,
                                      philox_unit(c.seed, 0xde1ce, uint64_t(i) * 4 + 2));
    }
  }
  // Workloads drawn where the trace leaves them to the config.
  for (int64_t b : c.batch_sizes) TURBINE_CHECK(b >= 1, "workload.batch_sizes: {} < 1", b);
  TURBINE_CHECK(c.local_steps_lo >= 0 && c.local_steps_hi >= c.local_steps_lo,
                "workload.local_steps: [{}, {}] must be [lo, hi] with 0 <= lo <= hi",
                c.local_steps_lo, c.local_steps_hi);
  for (int64_t i = 0; i < c.clients; ++i) {
    ClientProfile& p = profiles_[size_t(i)];
    const double draw = philox_unit(c.seed, 0x3044, uint64_t(i));
    if (p.batch_size == 0 && !c.batch_sizes.empty())
      p.batch_size = c.batch_sizes[size_t(draw * double(c.batch_sizes.size()))];
    if (p.local_steps == 0 && c.local_steps_hi > 0)
      p.local_steps = c.local_steps_lo + int64_t(philox_unit(c.seed, 0x3045, uint64_t(i)) *
                                                 double(c.local_steps_hi - c.local_steps_lo + 1));
    p.local_steps = std::max(p.local_steps, int64_t(0));
  }
  // Availability.
  if (!c.availability_trace.empty()) {
    always_online_ = false;
    const CsvTable t = read_csv(c.availability_trace, {"client", "start_s", "end_s"}, {});
    const int64_t ci = t.column("client"), si = t.column("start_s"), ei = t.column("end_s");
    for (size_t r = 0; r < t.rows.size(); ++r) {
      const double id = t.rows[r][size_t(ci)];
      const Window w{t.rows[r][size_t(si)], t.rows[r][size_t(ei)]};
      const std::string where = fmt::format("{}:{}", c.availability_trace, t.lines[r]);
      TURBINE_CHECK(id >= 0 && id == std::floor(id) && id < 1e9,
                    "{}: client '{}' is not a client number", where, id);
      TURBINE_CHECK(w.start >= 0 && w.end > w.start,
                    "{}: window [{}, {}) must have 0 <= start_s < end_s", where, w.start, w.end);
      if (traced_.size() <= size_t(id)) traced_.resize(size_t(id) + 1);
      traced_[size_t(id)].push_back(w);
    }
    for (auto& windows : traced_)
      std::sort(windows.begin(), windows.end(),
                [](const Window& a, const Window& b) { return a.start < b.start; });
  } else if (c.mean_offline_s > 0) {
    TURBINE_CHECK(c.mean_online_s > 0,
                  "availability.mean_online_s must be positive when mean_offline_s is ({})",
                  c.mean_offline_s);
    always_online_ = false;
  }
}

void Population::walk_drawn(int64_t client, const std::function<bool(const Window&)>& visit) const {
  // Spells alternate offline and online from a random phase, each of an
  // exponential length with its mean; visit() sees the online ones in order
  // until it returns false.
  const double on = config_.mean_online_s, off = config_.mean_offline_s;
  const uint64_t stream = 0xa7a11ULL + uint64_t(client);
  auto expo = [&](uint64_t k, double mean) {
    return -mean * std::log1p(-philox_unit(config_.seed, stream, k));
  };
  const bool starts_online = philox_unit(config_.seed, stream, 0) < on / (on + off);
  double t = 0;
  for (uint64_t k = 1, n = 0;; ++n) {
    if (n > 0 || !starts_online) t += expo(k++, off);
    Window w;
    w.start = t;
    t += expo(k++, on);
    w.end = t;
    if (!visit(w)) return;
  }
}

double Population::online_until(int64_t client, double t) const {
  if (always_online_) return kInf;
  if (!traced_.empty()) {
    const auto& windows = traced_[size_t(client) % traced_.size()];
    for (const Window& w : windows)
      if (w.start <= t && t < w.end) return w.end;
    return t;
  }
  double until = t;
  walk_drawn(client, [&](const Window& w) {
    if (w.start > t) return false;
    if (t < w.end) until = w.end;
    return t >= w.end;
  });
  return until;
}

std::vector<Window> Population::windows(int64_t client, double horizon) const {
  if (always_online_) return {Window{0, kInf}};
  if (!traced_.empty()) {
    std::vector<Window> out;
    for (const Window& w : traced_[size_t(client) % traced_.size()])
      if (w.start < horizon) out.push_back(w);
    return out;
  }
  std::vector<Window> out;
  walk_drawn(client, [&](const Window& w) {
    if (w.start >= horizon) return false;
    out.push_back(w);
    return true;
  });
  return out;
}

}  // namespace turbine::fl
