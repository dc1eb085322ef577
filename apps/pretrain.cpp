// pretrain: data-parallel BLOOM pretraining on a token data set.
//   mpirun -np 2 pretrain --config configs/pretrain/kjv-small.yaml [--set key=value] [--resume]
#include "train/pretrain.hpp"

using namespace turbine;

int main(int argc, char** argv) {
  CLI::App cli{
      "Pretrain a BLOOM model on a token data set (tools/prepare-data), data-parallel over MPI "
      "ranks:\n  mpirun -np N pretrain --config FILE [--set key=value ...] [--resume]\n"
      "SIGUSR1 or SIGTERM (or Ctrl-C) stops it after the current step with a checkpoint and\n"
      "exit status 75; --resume continues."};
  train::JobFlags flags;
  flags.add_to(cli);
  CLI11_PARSE(cli, argc, argv);

  train::Job job(&argc, &argv);
  const auto options = job.configure<train::PretrainOptions>(flags, train::pretrain_schema(),
                                                             train::pretrain_options);
  if (!options) return 1;
  if (flags.dry_run) return job.print_resolved(options->resolved_config_yaml);
  return job.run([&] {
    const train::PretrainResult result = train::pretrain(*options, job);
    return train::report_pretrain(*options, result);
  });
}
