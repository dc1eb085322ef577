// ulysses-train: BLOOM training on long sequences with DeepSpeed-Ulysses
// sequence parallelism (sequence_parallel_size ranks share each sequence),
// data parallel over the groups, on the loop pretrain runs.
//   mpirun -np 4 ulysses-train --config configs/ulysses/kjv-long.yaml [--set key=value] [--resume]
#include "train/pretrain.hpp"

using namespace turbine;

int main(int argc, char** argv) {
  CLI::App cli{
      "Train a BLOOM model on long sequences with DeepSpeed-Ulysses sequence parallelism:\n"
      "  mpirun -np N ulysses-train --config FILE [--set key=value ...] [--resume]\n"
      "N = sequence_parallel_size x data-parallel groups; each rank of a group holds 1/P of\n"
      "every sequence, and attention trades it for n_head/P heads of the whole sequence.\n"
      "SIGUSR1 or SIGTERM (or Ctrl-C) stops it after the current step with a checkpoint and\n"
      "exit status 75; --resume continues, also with another sequence_parallel_size."};
  train::JobFlags flags;
  flags.add_to(cli);
  CLI11_PARSE(cli, argc, argv);

  train::Job job(&argc, &argv);
  const auto options = job.configure<train::PretrainOptions>(
      flags, train::pretrain_schema("ulysses-train"), train::ulysses_options);
  if (!options) return 1;
  if (flags.dry_run) return job.print_resolved(options->resolved_config_yaml);
  return job.run([&] {
    const train::PretrainResult result = train::pretrain(*options, job);
    return train::report_pretrain(*options, result);
  });
}
