// bench-ulysses: one training step of a BLOOM on long sequences with
// DeepSpeed-Ulysses over the ranks of mpirun (P = the world size), at each
// sequence length given, plain or with activation checkpointing and the
// tiled loss. Prints one JSON line per length (rank 0): tokens/s, the peak
// of the tensor allocator over the step (the largest rank's, weights,
// gradients and AdamW state included), the all-to-all bytes per rank and
// step, and the same step's bytes for Megatron-LM's sequence parallelism
// and ring attention from their formulas. tools/bench-ulysses runs it for
// each P and fits the largest sequence that fits a memory budget.
//   mpirun -np P bench-ulysses --seq 2048,4096 [--memory-saving] [--hidden 384 --heads 8
//                              --layers 4 --vocab 50257]
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "autograd/functions.hpp"
#include "core/rng.hpp"
#include "core/timer.hpp"
#include "seqpar/ulysses.hpp"
#include "train/engine.hpp"

using namespace turbine;

namespace {

data::Batch random_batch(int64_t seq, int64_t vocab, uint64_t seed) {
  std::vector<int64_t> ids(size_t(seq + 1));
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = int64_t(philox_uniform(seed, 0, 0, i) * double(vocab)) % vocab;
  const std::span<const int64_t> all(ids);
  return {Tensor::from_vector<int64_t>({1, seq}, all.first(size_t(seq))),
          Tensor::from_vector<int64_t>({1, seq}, all.last(size_t(seq)))};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"One Ulysses training step per sequence length: tokens/s, peak memory, bytes"};
  std::vector<int64_t> lengths{2048};
  nn::BloomConfig config;
  config.hidden_size = 384;
  config.n_head = 8;  // P = 1, 2, 4 and 8 divide it
  config.n_layer = 4;
  config.vocab_size = 50257;  // GPT-2's
  bool memory_saving = false;
  cli.add_option("--seq", lengths, "sequence lengths")->delimiter(',');
  cli.add_option("--hidden", config.hidden_size, "hidden size");
  cli.add_option("--heads", config.n_head, "attention heads");
  cli.add_option("--layers", config.n_layer, "blocks");
  cli.add_option("--vocab", config.vocab_size, "vocabulary");
  cli.add_flag("--memory-saving", memory_saving,
               "activation checkpointing (one per layer) and the tiled loss (64 MB tiles)");
  CLI11_PARSE(cli, argc, argv);

  dist::MpiSession mpi(&argc, &argv);
  dist::Communicator world = dist::Communicator::world();
  const int p = world.size();
  const seqpar::Layout layout = seqpar::Layout::of(world.rank(), p, p);
  dist::ProcessGroup group(world.split(0, world.rank()));
  const seqpar::UlyssesExchange exchange(group);

  nn::Bloom model(config, 1);
  if (p > 1) model.set_sequence_parallel(&exchange);
  if (memory_saving) {
    model.set_activation_checkpointing({true, 0, false});
    model.set_loss_tile_tokens(std::max<int64_t>(1, (64 << 20) / (4 * config.vocab_size)));
  }
  train::EngineOptions options;
  options.optimizer.lr = 1e-4f;
  train::Engine engine("model", world, model.parameters(), options);

  for (const int64_t seq : lengths) {
    const data::Batch batch = random_batch(seq, config.vocab_size, uint64_t(seq));
    const seqpar::SequenceSlice slice = seqpar::slice_batch(batch, layout.sp_rank, p);
    double seconds = 0;
    int64_t peak = 0, a2a = 0;
    // Two steps: the first allocates the optimizer state; the second is measured.
    for (int step = 0; step < 2; ++step) {
      reset_peak_memory(Device::cpu());
      const int64_t bytes_before = group.stats().all_to_all_bytes;
      world.barrier();
      Timer timer;
      engine.zero_grad();
      const Tensor share =
          model.loss(slice.ids, slice.targets, std::max<int64_t>(slice.counted, 1));
      engine.backward(ag::scale(share, float(p)), 0);
      engine.step(1e-4);
      world.barrier();
      seconds = timer.seconds();
      peak = memory_stats(Device::cpu()).peak_bytes;
      a2a = group.stats().all_to_all_bytes - bytes_before;
    }
    double peak_max = double(peak);
    world.allreduce_max(&peak_max, 1);
    const int64_t padded = (seq + p - 1) / p * p;
    const int64_t layers = config.n_layer, h = config.hidden_size;
    const auto megatron = seqpar::megatron_sp_layer_bytes(padded, h, p, 4);
    const auto ring = seqpar::ring_attention_layer_bytes(padded, h, p, 4);
    const auto ulysses = seqpar::ulysses_layer_bytes(padded, h, p, 4);
    if (world.rank() == 0) {
      nlohmann::ordered_json line = {
          {"p", p},
          {"memory_saving", memory_saving},
          {"seq", seq},
          {"tokens_per_s", double(seq) / seconds},
          {"step_s", seconds},
          {"peak_mb", peak_max / (1 << 20)},
          {"all_to_all_bytes", a2a},
          {"ulysses_formula_bytes",
           p > 1 ? layers * ((memory_saving ? 2 : 1) * ulysses.forward + ulysses.backward) : 0},
          {"megatron_sp_bytes", p > 1 ? layers * (megatron.forward + megatron.backward) : 0},
          {"ring_attention_bytes", layers * (ring.forward + ring.backward)}};
      std::printf("%s\n", line.dump().c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}
