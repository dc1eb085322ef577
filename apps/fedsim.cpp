// fedsim: federated learning of image classifiers (FedHC, issue 17). So far
// its centralized baseline: the same model and data trained by one
// data-parallel job, the upper bound federated runs are compared with.
//   mpirun -np N fedsim centralized --config configs/fedsim/fashion-cnn.yaml [--set key=value]
//   [--resume]
#include "core/error.hpp"
#include "train/classify.hpp"

using namespace turbine;

int main(int argc, char** argv) {
  CLI::App cli{
      "Federated learning of image classifiers (FedHC). Modes:\n"
      "  mpirun -np N fedsim centralized --config FILE [--set key=value ...] [--resume]\n"
      "centralized trains the config's model (model.arch mlp, cnn or resnet) on the whole\n"
      "training split of its data set (tools/prepare-data --images fashion-mnist), data\n"
      "parallel over the ranks, and evaluates on the test split: the baseline federated runs\n"
      "are measured against. SIGUSR1 or SIGTERM stops after the current step with a checkpoint\n"
      "and exit status 75; --resume continues."};
  std::string mode;
  cli.add_option("mode", mode, "centralized (the federated simulation is not built yet)")
      ->required()
      ->check(CLI::IsMember({"centralized"}));
  train::JobFlags flags;
  flags.add_to(cli);
  CLI11_PARSE(cli, argc, argv);

  train::Job job(&argc, &argv);
  const auto options = job.configure<train::ClassifyOptions>(
      flags, train::classify_schema("fedsim-centralized"), train::classify_options);
  if (!options) return 1;
  if (flags.dry_run) return job.print_resolved(options->resolved_config_yaml);
  return job.run([&] {
    const train::ClassifyResult result = train::classify(*options, job);
    return train::report_classify(*options, result);
  });
}
