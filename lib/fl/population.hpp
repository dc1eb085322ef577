// The simulated client population of fedsim (issue 17): each client's device
// (its compute share of a worker, a memory cap, a network bandwidth), its
// workload (batch size, local steps) and when it is online, either drawn
// from distributions by seed or read from CSV traces in FedScale's spirit.
//
// Device trace (devices.trace): a header naming the columns, then one row a
// device; client c takes row c mod rows, as FedScale deals its device
// profiles out. Columns: compute (required: share of a worker, (0, 1]),
// memory_mb, bandwidth_mbps, batch_size, local_steps (0 or absent: the
// config's). Availability trace (availability.trace): columns client,
// start_s, end_s: the client's online windows in simulated seconds; client c
// takes the windows of trace client c mod (largest id + 1), and a client
// with none is never online. '#' starts a comment; every error names the
// file and line.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace turbine::fl {

struct ClientProfile {
  double compute = 1.0;       // share of a worker, (0, 1]
  double memory_mb = 0;       // the device's memory cap; 0: none
  double bandwidth_mbps = 0;  // up and down; 0: communication takes no time
  int64_t batch_size = 0;     // 0: local.batch_size
  int64_t local_steps = 0;    // 0: local.epochs (and local.max_steps)
  // Simulated seconds to download and upload `bytes` of model.
  double communication_seconds(int64_t bytes) const;
};

struct Window {
  double start = 0, end = 0;  // [start, end) in simulated seconds
};

struct PopulationConfig {
  int64_t clients = 1;
  uint64_t seed = 1;
  // Drawn devices (when no trace): compute tiers with weights (equal if
  // empty), memory caps drawn uniformly from memory_mb (none if empty),
  // bandwidth log-uniform over [lo, hi] (free if both 0).
  std::vector<double> compute = {1.0}, compute_weights, memory_mb;
  double bandwidth_lo = 0, bandwidth_hi = 0;
  std::string device_trace;
  // Drawn workloads: batch sizes uniformly from the list (the config's if
  // empty); local steps uniform in [lo, hi] (the config's if 0).
  std::vector<int64_t> batch_sizes;
  int64_t local_steps_lo = 0, local_steps_hi = 0;
  // Availability: a trace, or alternating online and offline spells with
  // exponential lengths of these means (always online if mean_offline_s is 0).
  std::string availability_trace;
  double mean_online_s = 0, mean_offline_s = 0;
};

class Population {
 public:
  explicit Population(const PopulationConfig& config);
  int64_t size() const { return int64_t(profiles_.size()); }
  const ClientProfile& profile(int64_t client) const { return profiles_.at(size_t(client)); }
  // Whether `client` is online at simulated time t, and until when it stays
  // online (t itself if offline; infinity if it never leaves).
  bool online(int64_t client, double t) const { return online_until(client, t) > t; }
  double online_until(int64_t client, double t) const;
  // Online windows of `client` that start before `horizon` (for reports and tests).
  std::vector<Window> windows(int64_t client, double horizon) const;
  bool always_online() const { return always_online_; }

 private:
  PopulationConfig config_;
  std::vector<ClientProfile> profiles_;
  bool always_online_ = true;
  std::vector<std::vector<Window>> traced_;  // by trace client id
  // Walks the online spells of a drawn availability (deterministic by seed).
  void walk_drawn(int64_t client, const std::function<bool(const Window&)>& visit) const;
};

// A CSV file with a header row: the columns asked for, by name, as numbers.
// Missing required columns, unknown ones, short rows and bad numbers are
// errors naming the file and line.
struct CsvTable {
  std::vector<std::string> columns;
  std::vector<std::vector<double>> rows;
  std::vector<int64_t> lines;                     // the file line of each row
  int64_t column(const std::string& name) const;  // -1 if absent
};
CsvTable read_csv(const std::string& path, const std::vector<std::string>& required,
                  const std::vector<std::string>& optional);

}  // namespace turbine::fl
