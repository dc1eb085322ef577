// The job runtime: what every app does before and around its work. The MPI
// session and world communicator; the standard flags (--config, --set,
// --dry-run, --resume); the config loaded and resolved on every rank with
// one error report for all; DeepSpeed keys that mean nothing here reported
// once; stop signals; the device this rank computes on; the output folder
// rules; one error path that ends every rank together; and heartbeats that
// end the job when a rank stops answering (dist/heartbeat.hpp).
//
//   int main(int argc, char** argv) {
//     CLI::App cli{"..."};
//     train::JobFlags flags;
//     flags.add_to(cli);
//     CLI11_PARSE(cli, argc, argv);
//     train::Job job(&argc, &argv);
//     const auto options = job.configure<MyOptions>(flags, my_schema(), my_options);
//     if (!options) return 1;                       // rank 0 said why
//     if (flags.dry_run) return job.print_resolved(options->resolved_config_yaml);
//     return job.run([&] { ...; return 0; });
//   }
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dist/communicator.hpp"
#include "dist/heartbeat.hpp"
#include "io/config.hpp"
#include "kernels/backend.hpp"
#include "tensor/tensor.hpp"

namespace turbine::train {

// The flags every job takes.
struct JobFlags {
  std::string config_path;
  std::vector<std::string> overrides;  // --set key=value, in order
  bool dry_run = false;
  bool resume = false;  // adds resume=auto to the overrides
  // Adds them to an app or one of its subcommands; `resumable`: --resume
  // too; `config_required`: --config must be given (else the schema's
  // defaults and --set are the whole config).
  void add_to(CLI::App& app, bool resumable = true, bool config_required = true);
  // The overrides with --resume applied.
  std::vector<std::string> all_overrides() const;
};

class Job {
 public:
  Job(int* argc, char*** argv);
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  dist::Communicator& world() { return world_; }
  bool leader() const { return world_.rank() == 0; }

  // Loads the config and resolves the app's options on every rank, before
  // any other collective. A config error is the same on every rank: rank 0
  // reports it once and all return nullopt together (exit 1). DeepSpeed keys
  // that mean nothing here are reported once, with the reason.
  template <typename Options>
  std::optional<Options> configure(const JobFlags& flags, const io::ConfigSchema& schema,
                                   const std::function<Options(const io::Config&, int)>& resolve) {
    std::optional<Options> options;
    const bool ok = load_config(
        flags, schema, [&](const io::Config& config) { options = resolve(config, world_.size()); });
    if (!ok) options.reset();
    return options;
  }

  // The same protocol for a config the app assembles itself (rlhf's
  // per-step views): `resolve` loads and resolves, and appends the ignored
  // keys it met, which rank 0 reports once.
  template <typename Options>
  std::optional<Options> configure_with(
      const std::function<Options(std::vector<io::Config::IgnoredKey>&)>& resolve) {
    std::optional<Options> options;
    const bool ok = guard_config(
        [&](std::vector<io::Config::IgnoredKey>& ignored) { options = resolve(ignored); });
    if (!ok) options.reset();
    return options;
  }

  // --dry-run: rank 0 prints the resolved config; exit status 0.
  int print_resolved(const std::string& resolved_yaml);

  // Runs the job's work and returns its exit status. An exception on any
  // rank is reported there and ends every rank with MPI_Abort (the others may
  // be waiting in a collective); a CollectiveError, thrown on every rank
  // together, ends them in order (exit status 1).
  int run(const std::function<int()>& work);

  // The device this rank computes on: "cpu", or "cuda" (the GPU of its
  // node-local rank; two ranks sharing a GPU are refused, since NCCL cannot
  // reduce between them). Collective.
  Device pick_device(const std::string& device);

 private:
  bool load_config(const JobFlags& flags, const io::ConfigSchema& schema,
                   const std::function<void(const io::Config&)>& resolve);
  bool guard_config(const std::function<void(std::vector<io::Config::IgnoredKey>&)>& resolve);
  // Constructed first: stop signals go to their watcher thread before MPI_Init
  // starts threads of its own (core/signals.hpp).
  struct StopSignalWatch {
    StopSignalWatch();
  } stop_signals_;
  dist::MpiSession mpi_;
  dist::Communicator world_;
  // A bad TURBINE_HEARTBEAT_TIMEOUT, reported by configure like a config error.
  std::string heartbeat_problem_;
  // Last: stopped (and its goodbyes exchanged) before MPI is finalized.
  std::unique_ptr<dist::Heartbeat> heartbeat_;
};

// The per-device GEMM rate MFU is reported against, in GFLOP/s:
// configured_tflops when set, else the peak measured now with every rank
// busy (collective). Logs (rank 0) the GEMM kernel chosen and the figure.
double gemm_peak_gflops(dist::Communicator& comm, Device device, double configured_tflops);

}  // namespace turbine::train
