// The job runtime.
#include "train/job.hpp"

#include <cstdio>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/signals.hpp"
#include "ops/ops.hpp"

namespace turbine::train {

void JobFlags::add_to(CLI::App& app, bool resumable, bool config_required) {
  auto* config = app.add_option("--config", config_path, "YAML experiment config");
  if (config_required) config->required();
  app.add_option("--set", overrides, "override a config key: --set optimizer.params.lr=3e-4");
  app.add_flag("--dry-run", dry_run, "validate and print the resolved config, then exit");
  if (resumable)
    app.add_flag("--resume", resume, "continue from the newest complete checkpoint in output.dir");
}

std::vector<std::string> JobFlags::all_overrides() const {
  std::vector<std::string> out = overrides;
  if (resume) out.push_back("resume=auto");
  return out;
}

Job::StopSignalWatch::StopSignalWatch() {
  install_stop_signals();
}

Job::Job(int* argc, char*** argv) : mpi_(argc, argv), world_(dist::Communicator::world()) {
  dist::HeartbeatOptions options;
  try {
    options = dist::HeartbeatOptions::from_environment();
  } catch (const std::exception& e) {
    heartbeat_problem_ = e.what();  // the same on every rank: configure reports it
    options.timeout_s = 0;
  }
  heartbeat_ = std::make_unique<dist::Heartbeat>(world_, options);
}

bool Job::load_config(const JobFlags& flags, const io::ConfigSchema& schema,
                      const std::function<void(const io::Config&)>& resolve) {
  return guard_config([&](std::vector<io::Config::IgnoredKey>& ignored) {
    const io::Config config = io::Config::load(flags.config_path, schema, flags.all_overrides());
    ignored = config.ignored();
    resolve(config);
  });
}

bool Job::guard_config(const std::function<void(std::vector<io::Config::IgnoredKey>&)>& resolve) {
  std::string problem;
  std::vector<io::Config::IgnoredKey> ignored;
  try {
    if (!heartbeat_problem_.empty()) throw Error(heartbeat_problem_);
    resolve(ignored);
  } catch (const std::exception& e) {
    problem = e.what();
  }
  int rank0_failed = leader() && !problem.empty();
  world_.broadcast(&rank0_failed, sizeof(rank0_failed), 0);
  if (!problem.empty() && (leader() || !rank0_failed)) log::error("{}", problem);
  if (world_.any(!problem.empty())) return false;
  if (leader()) {
    for (const auto& key : ignored)
      log::warn("{}: {} is ignored: {}", key.where, key.key, key.reason);
  }
  return true;
}

int Job::print_resolved(const std::string& resolved_yaml) {
  if (leader()) std::printf("%s", resolved_yaml.c_str());
  return 0;
}

int Job::run(const std::function<int()>& work) {
  try {
    return work();
  } catch (const CollectiveError& e) {
    if (e.echo()) log::error("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    log::error("{}", e.what());
    if (world_.size() > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
}

Device Job::pick_device(const std::string& name) {
  if (name == "cpu") return Device::cpu();
  const int gpus = kernels::cuda_device_count();
  TURBINE_CHECK(gpus > 0, "device cuda: no CUDA device is visible to rank {}", world_.rank());
  dist::Communicator local = world_.node_local();
  const Device device = Device::cuda(local.rank() % gpus);
  // NCCL refuses two ranks of one communicator on one GPU ("duplicate GPU"),
  // so say so here, on every rank, rather than as an NCCL error code later.
  // GPUs are compared by UUID: with per-task binding (Slurm --gpus-per-task)
  // each rank sees its own GPU as device 0.
  bool shared = false;
  if (world_.size() > 1) {
    std::string mine = kernels::cuda_device_uuid(device.index);
    mine.resize(32);
    for (int r = 0; r < local.size(); ++r) {
      std::string theirs = mine;
      local.broadcast(theirs.data(), int64_t(theirs.size()), r);
      shared |= r != local.rank() && theirs == mine;
    }
  }
  TURBINE_CHECK(!world_.any(shared),
                "device cuda: ranks on this node share a GPU ({} ranks, {} GPU(s) visible to "
                "each): gradients are reduced over NCCL, which cannot put two ranks on one GPU; "
                "start at most one rank per GPU (mpirun --map-by ppr:N:node, or fewer -np)",
                local.size(), gpus);
  return device;
}

double gemm_peak_gflops(dist::Communicator& comm, Device device, double configured_tflops) {
  const std::string kernel = ops::gemm_kernel_name(device);
  if (configured_tflops > 0) {
    log::info("matrix products: {} on {}; MFU against peak_tflops {:g} per device", kernel,
              device.str(), configured_tflops);
    return 1e3 * configured_tflops;
  }
  // Measured with every rank busy, as in training: the rate each rank gets.
  comm.barrier();
  double gflops = 1e3 * ops::measure_gemm_peak_tflops(device, 0.3);
  comm.allreduce_sum(&gflops, 1);
  gflops /= comm.size();
  log::info(
      "matrix products: {} on {}, {:.1f} GFLOP/s per rank measured now (the peak MFU is "
      "reported against; set peak_tflops to use a datasheet figure)",
      kernel, device.str(), gflops);
  return gflops;
}

}  // namespace turbine::train
