// cl-edge: continual learning on edge devices with hierarchical memory
// replay (Miro, issue 18).
//   cl-edge --config configs/cl-edge/split-fashion-er.yaml [--set key=value]
//   mpirun -np N cl-edge --config configs/cl-edge/split-fashion-sweep.yaml --sweep
// One run learns the config's stream of tasks with one strategy (rank 0;
// other ranks have nothing to do); --sweep runs the grid of sweep.strategies
// x sweep.rb_sizes x sweep.seeds spread over the ranks (lib/cl/run.hpp).
#include "cl/run.hpp"
#include "core/error.hpp"
#include "core/signals.hpp"

using namespace turbine;

int main(int argc, char** argv) {
  CLI::App cli{
      "Continual learning of a stream of tasks (Split or Permuted Fashion-MNIST, the KJV's "
      "books) with one strategy: naive, joint, er, cb-er, agem, ewc, lwf, der++, hierarchical "
      "(RAM + storage memory with swaps, fixed: CarM) or miro (its memory configured per task "
      "by profiling, for accuracy per joule). Writes output.dir/metrics.jsonl (a line a "
      "task) and summary.json (accuracy matrix, ACC, forgetting, BWT, FWT, energy).\n"
      "  cl-edge --config FILE [--set key=value ...]\n"
      "  mpirun -np N cl-edge --config FILE --sweep   (strategies x rb_sizes x seeds; "
      "output.dir/sweep.md)"};
  train::JobFlags flags;
  flags.add_to(cli);
  bool sweep = false;
  cli.add_flag("--sweep", sweep,
               "run the grid sweep.strategies x sweep.rb_sizes x sweep.seeds over the ranks and "
               "write one table (mean and std over seeds)");
  CLI11_PARSE(cli, argc, argv);

  train::Job job(&argc, &argv);
  const auto options = job.configure<cl::ClOptions>(flags, cl::cl_schema(), cl::cl_options);
  if (!options) return 1;
  if (flags.dry_run) return job.print_resolved(options->resolved_config_yaml);
  return job.run([&] {
    if (sweep) return cl::run_sweep(*options, job);
    const Device device = job.pick_device(options->device);
    dist::Communicator self = job.world().split(job.world().rank(), 0);
    if (!job.leader()) return 0;
    const cl::StreamResult result = cl::run_stream(*options, device, self, true);
    if (result.stopped) {
      fmt::print("cl-edge: stopped with a checkpoint in {}; --resume continues\n",
                 options->output_dir);
      return kExitStoppedResumable;
    }
    return cl::report_stream(*options, result);
  });
}
