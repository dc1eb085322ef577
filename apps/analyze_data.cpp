// analyze-data: the offline analysis of curriculum learning. Computes each
// training window's difficulty over a token data set, in parallel over MPI
// ranks, and writes the difficulty index the pretrain job samples from
// (lib/efficiency/data_analyzer.hpp, difficulty_index.hpp).
//   mpirun -np N analyze-data --seq-len 128 data/kjv.h5
#include <CLI/CLI.hpp>
#include <cstdio>

#include "core/error.hpp"
#include "core/log.hpp"
#include "dist/communicator.hpp"
#include "efficiency/data_analyzer.hpp"

using namespace turbine;

int main(int argc, char** argv) {
  CLI::App app{
      "Compute the curriculum difficulty of every training window of a token data set\n"
      "(window w = train tokens [w T, w T + T + 1), as pretrain reads them) and write the\n"
      "index beside it: <data set minus .h5>.<metric>.seq<T>.index.h5.\n"
      "  mpirun -np N analyze-data --seq-len T DATA.h5"};
  efficiency::AnalyzeOptions options;
  std::string metric = "vocabularyrarity";
  bool quiet = false;
  app.add_option("dataset", options.dataset, "token data set (tools/prepare-data)")->required();
  app.add_option("--seq-len", options.seq_len, "tokens per training sequence: data.seq_len")
      ->required()
      ->check(CLI::PositiveNumber);
  app.add_option("--metric", metric,
                 "vocabularyrarity: mean -log unigram frequency of the window's tokens")
      ->check(CLI::IsMember({"vocabularyrarity"}))
      ->capture_default_str();
  app.add_option("--output,-o", options.output, "the index to write (default: beside the data)");
  app.add_flag("--force", options.force, "replace an existing index");
  app.add_flag("--quiet", quiet, "no progress line");
  CLI11_PARSE(app, argc, argv);
  options.metric = efficiency::metric_from_name(metric);
  options.progress = !quiet;

  dist::MpiSession mpi(&argc, &argv);
  dist::Communicator world = dist::Communicator::world();
  try {
    const efficiency::AnalyzeResult r = efficiency::analyze_data(options, world);
    log::info("analyze-data: wrote {}: {} windows of {}+1 tokens on {} rank(s) in {:.1f} s", r.path,
              r.windows, options.seq_len, world.size(), r.seconds);
    log::info("  {}: min {:.4f}, median {:.4f}, max {:.4f} (mean nats per token)", metric, r.min,
              r.median, r.max);
  } catch (const std::exception& e) {
    log::error("analyze-data: {}", e.what());
    if (world.size() > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
  return 0;
}
