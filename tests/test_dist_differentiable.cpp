// The differentiable collectives on 2 and 4 ranks (mpirun), on the CPU and,
// where each rank has a GPU (or the emulated ones), over NCCL: a
// tensor-parallel MLP (Megatron's f and g around a column- then row-parallel
// linear, and the gather/scatter variants) and Ulysses attention (QKV
// sequence shard -> head shard -> attention with the global heads' ALiBi ->
// back) each against its serial twin computed on every rank: outputs are the
// serial output's parts, and every gradient is the serial gradient's part.
#define BOOST_TEST_MODULE dist_differentiable
#include <boost/test/unit_test.hpp>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "dist/differentiable_collectives.hpp"
#include "dist/parallel_linear.hpp"
#include "dist_util.hpp"

using namespace turbine;
using turbine::testing::normalized_error;
using turbine::testing::part_of;

using turbine::testing::MpiFixture;
BOOST_TEST_GLOBAL_FIXTURE(MpiFixture);

namespace {

// A fresh leaf (to() on the same device would share x's autograd state).
Tensor leaf(const Tensor& x, Device device) {
  Tensor y = x.clone().to(device);
  y.set_requires_grad(true);
  return y;
}

// Summation order differs from the serial run (partial sums, then the
// all-reduce): f32 rounding only.
constexpr double kTolerance = 1e-5;

}  // namespace

BOOST_AUTO_TEST_CASE(tensor_parallel_mlp_with_f_and_g_equals_the_serial_mlp) {
  turbine::testing::on_each_device([](dist::ProcessGroup& group, Device device) {
    const int p = group.size(), me = group.rank();
    const int64_t n = 5, c = 6, f = 4 * p;
    const Tensor x0 = Tensor::randn({n, c}, 1, 0), w1 = Tensor::randn({f, c}, 1, 1),
                 w2 = Tensor::randn({c, f}, 1, 2), seed = Tensor::randn({n, c}, 1, 3);
    // Serial: y = (x w1^T) w2^T.
    Tensor x = leaf(x0, Device::cpu()), a = leaf(w1, Device::cpu()), b = leaf(w2, Device::cpu());
    const Tensor y = ag::linear(ag::linear(x, a, Tensor()), b, Tensor());
    autograd::backward(y, seed);
    // Parallel: w1 split by output rows (column-parallel), w2 by input
    // columns (row-parallel).
    Tensor xp = leaf(x0, device), ap = leaf(part_of(w1, 0, me, p), device),
           bp = leaf(part_of(w2, 1, me, p), device);
    const Tensor h = ag::linear(dist::copy_to_parallel_region(group, xp), ap, Tensor());
    const Tensor yp = dist::reduce_from_parallel_region(group, ag::linear(h, bp, Tensor()));
    autograd::backward(yp, seed.to(device));
    BOOST_TEST(normalized_error(yp, y) < kTolerance);
    // Without f's all-reduce x would get only this rank's share.
    BOOST_TEST(normalized_error(xp.grad(), x.grad()) < kTolerance);
    BOOST_TEST(normalized_error(ap.grad(), part_of(a.grad(), 0, me, p)) < kTolerance);
    BOOST_TEST(normalized_error(bp.grad(), part_of(b.grad(), 1, me, p)) < kTolerance);
  });
}

// y = x w^T serially, and over the group with w's part along `weight_dim`
// on each rank, wired by parallel(group, x, w_part): the output, the input's
// gradient and the weight part's gradient equal the serial ones.
template <class Parallel>
void check_split_linear(dist::ProcessGroup& group, Device device, const Tensor& x0,
                        const Tensor& w0, int weight_dim, Parallel parallel) {
  const int p = group.size(), me = group.rank();
  Tensor x = leaf(x0, Device::cpu()), w = leaf(w0, Device::cpu());
  const Tensor y = ag::linear(x, w, Tensor());
  const Tensor seed = Tensor::randn(y.shape(), 2, 9);
  autograd::backward(y, seed);
  Tensor xp = leaf(x0, device), wp = leaf(part_of(w0, weight_dim, me, p), device);
  const Tensor yp = parallel(group, xp, wp);
  autograd::backward(yp, seed.to(device));
  BOOST_TEST(normalized_error(yp, y) < kTolerance);
  BOOST_TEST(normalized_error(xp.grad(), x.grad()) < kTolerance);
  BOOST_TEST(normalized_error(wp.grad(), part_of(w.grad(), weight_dim, me, p)) < kTolerance);
}

BOOST_AUTO_TEST_CASE(gather_and_scatter_of_the_last_dim_equal_the_serial_linears) {
  turbine::testing::on_each_device([](dist::ProcessGroup& group, Device device) {
    const int64_t n = 3, c = 4, f = 2 * group.size();
    // Column-parallel linear (w split by output rows), output gathered.
    check_split_linear(group, device, Tensor::randn({2, n, c}, 2, 0), Tensor::randn({f, c}, 2, 1),
                       0, [](dist::ProcessGroup& g, const Tensor& x, const Tensor& w) {
                         return dist::gather_from_parallel_region(
                             g, ag::linear(dist::copy_to_parallel_region(g, x), w, Tensor()));
                       });
    // Row-parallel linear (w split by input columns) fed the whole input.
    check_split_linear(group, device, Tensor::randn({2, n, f}, 2, 2), Tensor::randn({c, f}, 2, 3),
                       1, [](dist::ProcessGroup& g, const Tensor& x, const Tensor& w) {
                         return dist::reduce_from_parallel_region(
                             g, ag::linear(dist::scatter_to_parallel_region(g, x), w, Tensor()));
                       });
  });
}

BOOST_AUTO_TEST_CASE(column_then_row_parallel_linear_layers_equal_the_serial_mlp) {
  turbine::testing::on_each_device([](dist::ProcessGroup& group, Device device) {
    const int p = group.size(), me = group.rank();
    const int64_t c = 6, f = 4 * p;
    nn::Init init{5, 0, 0.5f, Device::cpu()};
    nn::Linear up(c, f, true, init), down(f, c, true, init);
    up.bias.fill(0.1f);
    down.bias.fill(-0.2f);
    const Tensor x0 = Tensor::randn({2, 3, c}, 5, 7), seed = Tensor::randn({2, 3, c}, 5, 8);
    // Serial: down(gelu(up(x))).
    Tensor x = leaf(x0, Device::cpu());
    const Tensor y = down.forward(ag::gelu(up.forward(x)));
    autograd::backward(y, seed);
    // Parallel: the layers made from the same full ones, on the group's device.
    nn::Linear up_d, down_d;
    up_d.weight = leaf(up.weight, device);
    up_d.bias = leaf(up.bias, device);
    down_d.weight = leaf(down.weight, device);
    down_d.bias = leaf(down.bias, device);
    dist::ColumnParallelLinear column(up_d, group, false);
    dist::RowParallelLinear row(down_d, group, true);
    BOOST_TEST(column.out_features() == f);
    BOOST_TEST(row.in_features() == f);
    Tensor xp = leaf(x0, device);
    const Tensor yp = row.forward(ag::gelu(column.forward(xp)));
    autograd::backward(yp, seed.to(device));
    BOOST_TEST(normalized_error(yp, y) < kTolerance);
    BOOST_TEST(normalized_error(xp.grad(), x.grad()) < kTolerance);
    const auto& column_part = dynamic_cast<const nn::Linear&>(column.part());
    const auto& row_part = dynamic_cast<const nn::Linear&>(row.part());
    BOOST_TEST(normalized_error(column_part.weight.grad(), part_of(up.weight.grad(), 0, me, p)) <
               kTolerance);
    BOOST_TEST(normalized_error(column_part.bias.grad(), part_of(up.bias.grad(), 0, me, p)) <
               kTolerance);
    BOOST_TEST(normalized_error(row_part.weight.grad(), part_of(down.weight.grad(), 1, me, p)) <
               kTolerance);
    // The row-parallel bias is added once, after the sum: every rank's
    // gradient is the serial one.
    nn::ParameterList params;
    row.parameters("", params);
    BOOST_TEST(params.back().name == "bias");
    BOOST_TEST(normalized_error(params.back().tensor.grad(), down.bias.grad()) < kTolerance);
  });
}

BOOST_AUTO_TEST_CASE(ulysses_attention_equals_full_attention_with_its_gradients) {
  turbine::testing::on_each_device([](dist::ProcessGroup& group, Device device) {
    const int p = group.size(), me = group.rank();
    const int64_t batch = 2, seq = 4 * p, heads = 2 * p, head_dim = 4;
    const int64_t local_heads = heads / p, local_seq = seq / p;
    const Tensor qkv0 = Tensor::randn({batch, seq, heads, 3, head_dim}, 3, 0);
    const Tensor seed = Tensor::randn({batch, seq, heads * head_dim}, 3, 1);
    const std::vector<float> slopes = ops::alibi_slopes(int(heads));

    // Serial: attention over every head and the whole sequence.
    ops::AttentionOptions options;
    options.alibi_slopes = slopes;
    Tensor qkv = leaf(qkv0, Device::cpu());
    const ops::Qkv split =
        ag::split_qkv(ag::reshape(qkv, {batch, seq, heads * 3 * head_dim}), int(heads));
    const Tensor y = ag::merge_heads(ag::attention(split.q, split.k, split.v, options));
    autograd::backward(y, seed);

    // Ulysses: this rank's slice of the sequence, exchanged for all of
    // the sequence of its heads, whose ALiBi slopes are the global ones.
    Tensor qkv_shard = leaf(part_of(qkv0, 1, me, p), device);
    const Tensor by_heads = dist::sequence_to_head_shards(group, qkv_shard);
    ops::AttentionOptions local = options;
    local.alibi_slopes.assign(slopes.begin() + me * local_heads,
                              slopes.begin() + (me + 1) * local_heads);
    const ops::Qkv parts = ag::split_qkv(
        ag::reshape(by_heads, {batch, seq, local_heads * 3 * head_dim}), int(local_heads));
    const Tensor out = ag::reshape(ag::merge_heads(ag::attention(parts.q, parts.k, parts.v, local)),
                                   {batch, seq, local_heads, head_dim});
    const Tensor yp = ag::reshape(dist::head_to_sequence_shards(group, out),
                                  {batch, local_seq, heads * head_dim});
    autograd::backward(yp, part_of(seed, 1, me, p).to(device));
    // Each head's attention is the same computation on either side.
    BOOST_TEST(normalized_error(yp, part_of(y, 1, me, p)) < 1e-6);
    BOOST_TEST(normalized_error(qkv_shard.grad(), part_of(qkv.grad(), 1, me, p)) < 1e-6);
  });
}
