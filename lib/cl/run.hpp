// cl-edge's job (issue 18): one strategy learning a stream of tasks
// (run_stream), and a sweep of strategies x memory sizes x seeds spread
// over the ranks (run_sweep), assembled from the library's parts: the
// stream (stream.hpp), the learner and strategies (learner.hpp,
// strategy.hpp), the replay tiers (replay.hpp), Miro's controller
// (controller.hpp), energy (energy.hpp) and the metrics (metrics.hpp).
//
// A run writes to output.dir: config.yaml, metrics.jsonl (a line after each
// task: its training, the accuracy row on every task, ACC/BWT/FWT/forgetting
// so far, energy so far, the memory's state, Miro's choice), and
// summary.json (the accuracy matrix, the metrics, time, energy modelled by
// the device profile, and measured by RAPL where readable, accuracy per kJ).
//
// Miro (strategy.name miro): before each task, and every
// miro.profile_period iterations, each candidate configuration (rb_size,
// st_size, swap_ratio) is profiled: from the current model, a RAM memory of
// its rb_size filled from the storage tier, profile_iterations steps of
// replay on profile_fraction of the task's samples, then its accuracy on
// held-out samples of the task and of the earlier tasks (from storage),
// and its energy for the whole task estimated from the trial's time per
// step and the configuration's memory and I/O under the device profile.
// The cutline most accurate are kept and the best accuracy per joule chosen
// (controller.hpp); the model is put back, and the memory reconfigured.
// Profiling's time and energy count in the run's, and are reported apart.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cl/energy.hpp"
#include "cl/learner.hpp"
#include "cl/metrics.hpp"
#include "cl/replay.hpp"
#include "cl/strategy.hpp"
#include "cl/stream.hpp"
#include "dist/communicator.hpp"
#include "io/config.hpp"
#include "train/job.hpp"

namespace turbine::cl {

struct MiroOptions {
  std::vector<int64_t> rb_sizes, st_sizes;
  std::vector<double> swap_ratios;
  int64_t candidates = 0;          // > 0: that many sampled from the grid
  double profile_fraction = 0.05;  // of the task's training samples
  int64_t profile_iterations = 20;
  int64_t profile_period = 0;  // > 0: profile again every N iterations of a task
  int64_t cutline = 3;
  double step_seconds = 0;  // > 0: a step's time in the energy estimates; 0: measured
};

struct SweepOptions {
  std::vector<std::string> strategies;
  std::vector<int64_t> rb_sizes;
  std::vector<int64_t> seeds;
};

struct ClOptions {
  StreamConfig stream;
  LearnerConfig learner;
  StrategyConfig strategy;
  TierConfig tier;      // its st_size is 0 unless the strategy keeps a storage tier
  int64_t st_size = 0;  // memory.st_size as configured (a sweep's storage strategies take it)
  std::string device = "cpu";
  int64_t epochs = 1;
  int64_t batch_size = 10;
  MiroOptions miro;
  DeviceProfile profile;
  SweepOptions sweep;
  uint64_t seed = 1234;
  std::string output_dir;
  int64_t checkpoint_interval = 0;  // iterations; 0: at task ends only
  int64_t checkpoint_keep = 2;
  int64_t stop_after = 0;  // iterations in all; 0: run to the end
  bool resume = false;
  std::string resolved_config_yaml;
};

io::ConfigSchema cl_schema();
// Every check that needs no training: the stream's arithmetic, the memory
// against its budget, storage_dir writable, the device profile found.
ClOptions cl_options(const io::Config& c, int world);
// The options of one run of a sweep: strategy, rb_size and seed set, its
// own output folder under output.dir/runs/.
ClOptions sweep_run(const ClOptions& o, const std::string& strategy, int64_t rb_size, int64_t seed);

struct StreamResult {
  AccuracyMatrix matrix{1};
  StreamMetrics metrics;
  EnergyUsage usage;
  EnergyBreakdown energy;            // modelled by the profile
  std::optional<double> measured_j;  // RAPL, where readable
  double seconds = 0;
  double profiling_seconds = 0, profiling_j = 0;  // Miro's
  double accuracy_per_kj = 0;                     // ACC x 100 / modelled kJ
  bool stopped = false;            // by a stop signal or train.stop_after, with a checkpoint
  nlohmann::ordered_json summary;  // summary.json
};

// One run; writes output_dir, checkpoints (at every task's end, every
// checkpoint.interval iterations, on a stop signal) included; continues from
// the newest checkpoint when o.resume (else one there is refused). `self`:
// this rank alone (the checkpoints' communicator). `log`: progress lines.
StreamResult run_stream(const ClOptions& o, Device device, dist::Communicator& self, bool log);
// Prints the result's table; exit status 0.
int report_stream(const ClOptions& o, const StreamResult& result);
// The sweep: run i of the grid on rank i mod world; rank 0 then writes
// output.dir/sweep.csv and sweep.md (mean and std over seeds). Collective.
// Started again, it skips finished runs and resumes stopped ones.
int run_sweep(const ClOptions& o, train::Job& job);

}  // namespace turbine::cl
