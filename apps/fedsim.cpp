// fedsim: federated learning of image classifiers (FedHC, issue 17).
//   mpirun -np N fedsim run --config configs/fedsim/fashion-fedavg.yaml [--set key=value]
//   [--resume] mpirun -np N fedsim centralized --config configs/fedsim/fashion-cnn.yaml [--set
//   key=value]
// run: rank 0 is the server, the other ranks persistent workers that run the
// clients (lib/fl/sim.hpp). centralized: the same model trained by one
// data-parallel job on the whole training split, the baseline federated runs
// are measured against (lib/train/classify.hpp).
#include "core/error.hpp"
#include "fl/sim.hpp"
#include "train/classify.hpp"

using namespace turbine;

int main(int argc, char** argv) {
  CLI::App cli{
      "Federated learning of image classifiers (FedHC, Flower's strategies). Modes:\n"
      "  mpirun -np N fedsim run --config FILE [--set key=value ...] [--resume]\n"
      "  mpirun -np N fedsim centralized --config FILE [--set key=value ...] [--resume]\n"
      "run simulates federation.num_clients clients holding parts of the data set\n"
      "(tools/prepare-data --images fashion-mnist): rank 0 is the server (sampling,\n"
      "aggregation, evaluation, checkpoints), ranks 1..N-1 persistent workers that train\n"
      "the sampled clients (with one rank the server trains them itself). centralized\n"
      "trains the config's model on the whole training split, data parallel over the ranks:\n"
      "the baseline. SIGUSR1 or SIGTERM stops after the current round (step) with a\n"
      "checkpoint and exit status 75; --resume continues."};
  std::string mode;
  cli.add_option("mode", mode, "run (the federated simulation) or centralized")
      ->required()
      ->check(CLI::IsMember({"run", "centralized"}));
  train::JobFlags flags;
  flags.add_to(cli);
  CLI11_PARSE(cli, argc, argv);

  train::Job job(&argc, &argv);
  if (mode == "run") {
    const auto options = job.configure<fl::SimOptions>(flags, fl::sim_schema(), fl::sim_options);
    if (!options) return 1;
    if (flags.dry_run) return job.print_resolved(options->resolved_config_yaml);
    return job.run([&] { return fl::report_sim(*options, fl::simulate(*options, job)); });
  }
  return train::run_classify_app(job, flags, "fedsim-centralized");
}
