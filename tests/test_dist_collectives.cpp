// The buffer and tensor collectives on 2 and 4 ranks (mpirun), over MPI on
// host memory and, where each rank has a GPU (or the emulated ones), over
// NCCL: each result against the same computation done serially on every
// rank from the global data, and each call's bytes in CommStats.
#define BOOST_TEST_MODULE dist_collectives
#include <boost/test/unit_test.hpp>
#include <cstring>

#include "dist/collectives.hpp"
#include "dist_util.hpp"
#include "ops/ops.hpp"
#include "test_util.hpp"

using namespace turbine;
using turbine::testing::contains;
using turbine::testing::error_of;
using turbine::testing::normalized_error;
using turbine::testing::part_of;

using turbine::testing::MpiFixture;
BOOST_TEST_GLOBAL_FIXTURE(MpiFixture);

namespace {

// A value that names who sent it to whom: rank `from`, block `to`, index i.
float tag(int from, int to, int64_t i) {
  return float(from * 10000 + to * 100 + i);
}

// The global tensor every rank builds alike (the serial run's data).
Tensor global_randn(const Shape& shape, uint64_t stream) {
  return Tensor::randn(shape, 7, stream);
}

// The bits of a 16-bit tensor (a dtype conversion would change them).
std::vector<uint16_t> bits_of(const Tensor& x) {
  const Tensor host = x.to(Device::cpu()).contiguous();
  std::vector<uint16_t> bits(size_t(host.numel()));
  std::memcpy(bits.data(), host.raw_data(), host.nbytes());
  return bits;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(buffers)

BOOST_AUTO_TEST_CASE(all_to_all_allgather_reduce_scatter_and_their_bytes) {
  turbine::testing::on_each_device([](dist::ProcessGroup& group, Device device) {
    dist::BufferCollectives& buffers = group.buffers(device);
    const int p = group.size(), me = group.rank();
    const int64_t block = 3;
    std::vector<float> send(size_t(block * p));
    for (int to = 0; to < p; ++to)
      for (int64_t i = 0; i < block; ++i) send[size_t(to * block + i)] = tag(me, to, i);
    const Tensor send_t = Tensor::from_vector<float>({p * block}, send, device);
    Tensor recv_t = Tensor::zeros({p * block}, DType::f32, device);

    const dist::CommStats before = group.stats();
    buffers.all_to_all(send_t.raw_data(), recv_t.raw_data(), block, DType::f32);
    std::vector<float> recv = recv_t.to_vector<float>();
    for (int from = 0; from < p; ++from)
      for (int64_t i = 0; i < block; ++i)
        BOOST_TEST(recv[size_t(from * block + i)] == tag(from, me, i));
    BOOST_TEST(group.stats().all_to_all_bytes - before.all_to_all_bytes == p * block * 4);

    // allgather of this rank's first block.
    buffers.allgather(send_t.raw_data(), recv_t.raw_data(), block, DType::f32);
    recv = recv_t.to_vector<float>();
    for (int from = 0; from < p; ++from)
      for (int64_t i = 0; i < block; ++i)
        BOOST_TEST(recv[size_t(from * block + i)] == tag(from, 0, i));
    BOOST_TEST(group.stats().allgather_bytes - before.allgather_bytes == p * block * 4);

    // reduce_scatter: block `me` summed over the senders.
    Tensor mine = Tensor::zeros({block}, DType::f32, device);
    buffers.reduce_scatter_sum(send_t.raw_data(), mine.raw_data(), block, DType::f32);
    const std::vector<float> sum = mine.to_vector<float>();
    for (int64_t i = 0; i < block; ++i) {
      float expected = 0;
      for (int from = 0; from < p; ++from) expected += tag(from, me, i);
      BOOST_TEST(sum[size_t(i)] == expected);
    }
    const dist::CommStats after = group.stats();
    BOOST_TEST(after.reduce_scatter_bytes - before.reduce_scatter_bytes == p * block * 4);
    BOOST_TEST(after.calls - before.calls == 3);
    BOOST_TEST(after.total_bytes() - before.total_bytes() == 3 * p * block * 4);
  });
}

BOOST_AUTO_TEST_CASE(sixteen_bit_activations_move_bit_for_bit) {
  turbine::testing::on_each_device([](dist::ProcessGroup& group, Device device) {
    const int p = group.size();
    const Tensor mine = global_randn({p * 4}, 100 + group.rank()).to(DType::bf16).to(device);
    Tensor gathered = Tensor::empty({p * p * 4}, DType::bf16, device);
    group.buffers(device).allgather(mine.raw_data(), gathered.raw_data(), p * 4, DType::bf16);
    const std::vector<uint16_t> bits = bits_of(gathered);
    for (int from = 0; from < p; ++from) {
      const std::vector<uint16_t> expected =
          bits_of(global_randn({p * 4}, 100 + from).to(DType::bf16));
      BOOST_TEST(std::vector<uint16_t>(bits.begin() + from * p * 4,
                                       bits.begin() + (from + 1) * p * 4) == expected,
                 boost::test_tools::per_element());
    }
  });
}

BOOST_AUTO_TEST_CASE(bad_calls_say_what_to_do) {
  dist::ProcessGroup group(dist::Communicator::world());
  Tensor buffer = Tensor::zeros({4 * group.size()}, DType::f32);
  float* data = buffer.data<float>();
  BOOST_TEST(contains(error_of([&] { group.host().all_to_all(data, data + 1, 1, DType::f32); }),
                      "overlap"));
  BOOST_TEST(contains(error_of([&] {
                        group.host().reduce_scatter_sum(data, data + 2 * group.size(), 1,
                                                        DType::bf16);
                      }),
                      "convert to f32"));
  BOOST_TEST(contains(error_of([&] { group.buffers(Device::cuda(0)); }), "was built for cpu"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(tensors)

BOOST_AUTO_TEST_CASE(all_reduce_all_gather_reduce_scatter_equal_the_serial_result) {
  turbine::testing::on_each_device([](dist::ProcessGroup& group, Device device) {
    const int p = group.size(), me = group.rank();
    // Every rank's contribution, and their sum, computed serially here.
    const Shape shape{p, 2 * p, 3 * p};
    Tensor serial_sum = Tensor::zeros(shape);
    for (int r = 0; r < p; ++r) serial_sum = ops::add(serial_sum, global_randn(shape, r));
    const Tensor mine = global_randn(shape, me).to(device);

    BOOST_TEST(normalized_error(dist::all_reduce_sum(group, mine), serial_sum) < 1e-6);
    for (int dim : {0, 1, 2}) {
      BOOST_TEST_CONTEXT("dim " << dim) {
        BOOST_TEST(normalized_error(dist::reduce_scatter_sum(group, mine, dim),
                                    part_of(serial_sum, dim, me, p)) < 1e-6);
        // The serial tensor's parts, gathered, are the serial tensor.
        const Tensor whole = global_randn({2 * p, 2 * p, 4}, 50);
        const Tensor part = dist::local_part(group, whole.to(device), dim);
        BOOST_TEST(normalized_error(part, part_of(whole, dim, me, p)) == 0);
        BOOST_TEST(normalized_error(dist::all_gather(group, part, dim), whole) == 0);
      }
    }
  });
}

BOOST_AUTO_TEST_CASE(ulysses_all_to_all_turns_sequence_shards_into_head_shards_and_back) {
  turbine::testing::on_each_device([](dist::ProcessGroup& group, Device device) {
    const int p = group.size(), me = group.rank();
    // (B, T, H, D) and the fused QKV (B, T, H, 3, D).
    for (const Shape& shape : {Shape{2, 3 * p, 2 * p, 4}, Shape{1, 2 * p, p, 3, 2}}) {
      BOOST_TEST_CONTEXT("global " << shape_str(shape)) {
        const Tensor whole = global_randn(shape, 60);
        const Tensor sequence_shard = part_of(whole, 1, me, p);
        const dist::CommStats before = group.stats();
        const Tensor head_shard = dist::all_to_all(group, sequence_shard.to(device), 2, 1);
        BOOST_TEST(normalized_error(head_shard, part_of(whole, 2, me, p)) == 0);
        BOOST_TEST(group.stats().all_to_all_bytes - before.all_to_all_bytes ==
                   int64_t(sequence_shard.nbytes()));
        BOOST_TEST(normalized_error(dist::all_to_all(group, head_shard, 1, 2), sequence_shard) ==
                   0);
      }
    }
    // 16-bit activations move as they are.
    const Tensor whole = global_randn({1, 2 * p, 2 * p, 2}, 61).to(DType::bf16);
    const Tensor moved = dist::all_to_all(group, part_of(whole, 1, me, p).to(device), 2, 1);
    BOOST_TEST((moved.dtype() == DType::bf16));
    BOOST_TEST(normalized_error(moved.to(DType::f32), part_of(whole, 2, me, p).to(DType::f32)) ==
               0);
  });
}

BOOST_AUTO_TEST_CASE(shapes_the_group_cannot_split_are_refused) {
  dist::ProcessGroup group(dist::Communicator::world());
  const Tensor x = Tensor::zeros({2, 2 * group.size() + 1, 4});
  const std::string error = error_of([&] { dist::all_to_all(group, x, 1, 2); });
  BOOST_TEST(contains(error, "make it a multiple of " + std::to_string(group.size())), error);
  BOOST_TEST(contains(error_of([&] { dist::all_to_all(group, x, 2, 2); }), "must differ"));
  BOOST_TEST(contains(error_of([&] { dist::all_gather(group, x, 3); }), "dim 3"));
}

BOOST_AUTO_TEST_SUITE_END()
