// DeepSpeed-Ulysses on 2 and 4 ranks (mpirun), on the CPU and, where each
// rank has a GPU (or the emulated ones), over NCCL: a sequence-parallel
// BLOOM (every P dividing the world, P x data-parallel groups) against the
// serial model on each group's batch, ALiBi included and sequences that P
// does not divide: the group's loss shares sum to the serial loss and the
// group's summed gradients equal the serial ones, also with activation
// checkpointing and the tiled loss. The all-to-all bytes of a step equal the
// formula; head counts that P does not divide are refused.
#define BOOST_TEST_MODULE ulysses
#include <boost/test/unit_test.hpp>

#include "autograd/tape.hpp"
#include "dist/collectives.hpp"
#include "dist_util.hpp"
#include "seqpar/ulysses.hpp"
#include "test_util.hpp"

using namespace turbine;
using turbine::testing::normalized_error;

using turbine::testing::MpiFixture;
BOOST_TEST_GLOBAL_FIXTURE(MpiFixture);

namespace {

// 12 heads: every P of 2, 3, 4 and 6 divides them.
nn::BloomConfig tiny_config(int64_t n_head = 12) {
  nn::BloomConfig c;
  c.vocab_size = 96;
  c.hidden_size = 2 * n_head;
  c.n_head = n_head;
  c.n_layer = 2;
  return c;
}

// A batch (B, T) of random ids; targets the next ids, with some ignored.
data::Batch random_batch(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed) {
  std::vector<int64_t> targets =
      turbine::testing::random_ids(batch, seq, vocab, seed, 2).to_vector<int64_t>();
  for (size_t i = 3; i < targets.size(); i += 7) targets[i] = -100;
  return {turbine::testing::random_ids(batch, seq, vocab, seed, 1),
          Tensor::from_vector<int64_t>({batch, seq}, targets)};
}

struct Variant {
  const char* name;
  bool checkpointing;
  int64_t tile_tokens;
};

// Runs body(layout, group) for every sequence-parallel size P > 1 that
// divides the world, the ranks split into P-rank groups.
template <class Body>
void for_each_group(Device device, Body body) {
  const dist::Communicator world = dist::Communicator::world();
  for (int p = 2; p <= world.size(); ++p) {
    if (world.size() % p != 0) continue;
    const seqpar::Layout layout = seqpar::Layout::of(world.rank(), world.size(), p);
    dist::ProcessGroup group(world.split(layout.dp_rank, layout.sp_rank), device);
    BOOST_TEST_CONTEXT("P = " << p << ", data-parallel rank " << layout.dp_rank) {
      body(layout, group);
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(sequence_parallel_bloom_equals_the_serial_model_with_its_gradients) {
  for (Device device : turbine::testing::dist_test_devices()) {
    BOOST_TEST_CONTEXT("on " << device.str()) {
      for_each_group(device, [&](const seqpar::Layout& layout, dist::ProcessGroup& group) {
        const nn::BloomConfig config = tiny_config();
        const int p = layout.sequence_parallel;
        for (const int64_t seq : {int64_t(4 * p), int64_t(4 * p + 1)}) {  // the second is padded
          // Each data-parallel group has its own batch.
          const data::Batch batch = random_batch(2, seq, config.vocab_size, 11 + layout.dp_rank);
          nn::Bloom serial(config, 5, device);
          const Tensor serial_loss = serial.loss(batch.ids, batch.targets);
          autograd::backward(serial_loss);
          for (const Variant v : {Variant{"plain", false, 0}, Variant{"checkpointed", true, 0},
                                  Variant{"checkpointed, tiled loss", true, 3}}) {
            BOOST_TEST_CONTEXT(v.name << ", T = " << seq) {
              nn::Bloom model(config, 5, device);
              const seqpar::UlyssesExchange exchange(group);
              model.set_sequence_parallel(&exchange);
              model.set_activation_checkpointing({v.checkpointing, 0, false});
              model.set_loss_tile_tokens(v.tile_tokens);
              const seqpar::SequenceSlice slice = seqpar::slice_batch(batch, layout.sp_rank, p);
              BOOST_TEST(slice.ids.dim(1) == (seq + p - 1) / p);
              const Tensor share = model.loss(slice.ids, slice.targets, slice.counted);
              autograd::backward(share);
              double loss = share.item();
              group.host().allreduce_sum(&loss, 1);
              BOOST_TEST(std::abs(loss - serial_loss.item()) < 1e-5 * serial_loss.item());
              for (size_t i = 0; i < model.parameters().size(); ++i) {
                const nn::Parameter& mine = model.parameters()[i];
                const Tensor summed = dist::all_reduce_sum(group, mine.tensor.grad());
                BOOST_TEST(normalized_error(summed, serial.parameters()[i].tensor.grad()) < 1e-5,
                           mine.name);
              }
            }
          }
        }
      });
    }
  }
}

BOOST_AUTO_TEST_CASE(all_to_all_bytes_of_a_step_equal_the_formula) {
  for_each_group(Device::cpu(), [](const seqpar::Layout& layout, dist::ProcessGroup& group) {
    const nn::BloomConfig config = tiny_config();
    const int p = layout.sequence_parallel;
    const int64_t batch = 2, seq = 5 * p;
    const seqpar::LayerTraffic per_layer =
        seqpar::ulysses_layer_bytes(batch * seq, config.hidden_size, p, 4);
    BOOST_TEST(per_layer.forward == 4 * batch * seq * config.hidden_size / p * 4);
    for (const bool checkpointing : {false, true}) {
      nn::Bloom model(config, 5);
      const seqpar::UlyssesExchange exchange(group);
      model.set_sequence_parallel(&exchange);
      model.set_activation_checkpointing({checkpointing, 0, false});
      const seqpar::SequenceSlice slice =
          seqpar::slice_batch(random_batch(batch, seq, config.vocab_size, 3), layout.sp_rank, p);
      const int64_t before = group.stats().all_to_all_bytes;
      autograd::backward(model.loss(slice.ids, slice.targets, slice.counted));
      // Checkpointing runs each layer's forward, exchanges included, again.
      const int64_t forwards = checkpointing ? 2 : 1;
      BOOST_TEST(group.stats().all_to_all_bytes - before ==
                     config.n_layer * (forwards * per_layer.forward + per_layer.backward),
                 (checkpointing ? "checkpointed" : "plain"));
    }
  });
  // The alternatives' figures at the same N, h, P (bench-ulysses prints them).
  BOOST_TEST(seqpar::megatron_sp_layer_bytes(1024, 64, 4, 2).forward == 4 * 1024 * 64 * 2);
  BOOST_TEST(seqpar::ring_attention_layer_bytes(1024, 64, 4, 2).forward == 2 * 256 * 64 * 2 * 3);
}

BOOST_AUTO_TEST_CASE(head_counts_the_group_does_not_divide_are_refused_naming_the_valid_sizes) {
  for_each_group(Device::cpu(), [](const seqpar::Layout& layout, dist::ProcessGroup& group) {
    if (layout.sequence_parallel % 3 == 0) return;
    nn::Bloom model(tiny_config(3), 5);  // 3 heads: P = 1 or 3
    const seqpar::UlyssesExchange exchange(group);
    const std::string error =
        turbine::testing::error_of([&] { model.set_sequence_parallel(&exchange); });
    BOOST_TEST(turbine::testing::contains(error, "use one of 1, 3"), error);
  });
  BOOST_TEST(
      turbine::testing::contains(turbine::testing::error_of([] { seqpar::Layout::of(0, 4, 3); }),
                                 "sequence_parallel_size 3 does not divide the 4 ranks"));
}
