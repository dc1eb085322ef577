// pretrain: data-parallel BLOOM pretraining on a token data set.
//   mpirun -np 2 pretrain --config configs/pretrain/kjv-small.yaml [--set key=value] [--resume]
#include <CLI/CLI.hpp>

#include <cstdio>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/signals.hpp"
#include "dist/communicator.hpp"
#include "train/pretrain.hpp"
#include "train/pretrain_config.hpp"

using namespace turbine;

int main(int argc, char** argv) {
  CLI::App app{
      "Pretrain a BLOOM model on a token data set (tools/prepare-data), data-parallel over MPI "
      "ranks:\n  mpirun -np N pretrain --config FILE [--set key=value ...] [--resume]\n"
      "SIGUSR1 or SIGTERM (or Ctrl-C) stops it after the current step with a checkpoint and\n"
      "exit status 75; --resume continues."};
  std::string config_path;
  std::vector<std::string> overrides;
  bool dry_run = false, resume = false;
  app.add_option("--config", config_path, "YAML experiment config")->required();
  app.add_option("--set", overrides, "override a config key: --set optimizer.params.lr=3e-4");
  app.add_flag("--dry-run", dry_run, "validate and print the resolved config, then exit");
  app.add_flag("--resume", resume, "continue from the newest complete checkpoint in output.dir");
  CLI11_PARSE(app, argc, argv);

  dist::MpiSession mpi(&argc, &argv);
  dist::Communicator world = dist::Communicator::world();
  if (resume) overrides.push_back("resume=auto");
  // Every rank validates the config before any collective. A config error is
  // the same on all ranks: rank 0 reports it once and all exit together.
  train::PretrainOptions options;
  std::string problem;
  try {
    const io::Config config = io::Config::load(config_path, train::pretrain_schema(), overrides);
    options = train::pretrain_options(config, world.size());
  } catch (const std::exception& e) {
    problem = e.what();
  }
  int rank0_failed = world.rank() == 0 && !problem.empty();
  world.broadcast(&rank0_failed, sizeof(rank0_failed), 0);
  if (!problem.empty() && (world.rank() == 0 || !rank0_failed)) log::error("{}", problem);
  if (world.any(!problem.empty())) return 1;

  try {
    if (dry_run) {
      if (world.rank() == 0) std::printf("%s", options.resolved_config_yaml.c_str());
      return 0;
    }
    install_stop_signals();
    const train::PretrainResult result = train::pretrain(options, world);
    if (result.stopped_early) return kExitStoppedResumable;
    log::info("done: {} steps, final train loss {:.4f}, validation loss {:.4f} (unigram entropy "
              "{:.4f}), {:.0f} tokens/s",
              result.steps, result.final_train_loss, result.final_val_loss,
              result.unigram_entropy, result.tokens_per_second);
    log::info("metrics: {}/metrics.jsonl  checkpoints: {}/checkpoints  plot: tools/plot-metrics "
              "{}/metrics.jsonl",
              options.output_dir, options.output_dir, options.output_dir);
  } catch (const std::exception& e) {
    log::error("{}", e.what());
    // One rank's error ends the job: the others may be waiting in a collective.
    if (world.size() > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
  return 0;
}
