// Tensor-parallel BLOOM inference on 2 and 3 ranks (mpirun), on the CPU and,
// where each rank has a GPU (or the emulated ones), over NCCL: the model
// split by dist::split_bloom (QKV and dense_h_to_4h by output rows, whole
// heads with their ALiBi slopes; dense and dense_4h_to_h by input columns;
// decode's LM head by vocabulary, 97 rows so the last rank's slice is
// short) decodes a ragged batch to the serial model's logits at every step
// and the same greedy tokens, with f32, bf16 and group-scaled int8 weights;
// its full forward (logits) is the serial one too; a group size that does
// not divide the heads is refused by name.
#define BOOST_TEST_MODULE dist_tensor_parallel
#include <boost/test/unit_test.hpp>

#include "autograd/tape.hpp"
#include "decode_compare.hpp"
#include "dist/tensor_parallel.hpp"
#include "dist_util.hpp"
#include "infer/generate.hpp"
#include "nn/compact.hpp"
#include "test_util.hpp"

using namespace turbine;
using turbine::testing::normalized_error;

using turbine::testing::MpiFixture;
BOOST_TEST_GLOBAL_FIXTURE(MpiFixture);

namespace {

nn::BloomConfig config() {
  nn::BloomConfig c;
  c.vocab_size = 97;
  c.hidden_size = 48;
  c.n_head = 6;  // divisible by 2 and 3
  c.n_layer = 2;
  return c;
}

// A ragged batch (prompts of 5, 2 and 7 tokens, left-padded) prefilled, then
// 6 greedy steps, on the split model and on the serial one; every step's
// logits must agree and the tokens be the same.
void decode_matches_serial(dist::ProcessGroup& group, Device device, DType weights,
                           int group_size) {
  const autograd::NoGradGuard inference;
  nn::Bloom serial(config(), 11, device), split(config(), 11, device);
  serial.set_training(false);
  split.set_training(false);
  dist::split_bloom(split, group);
  BOOST_TEST(split.heads() == 6 / group.size());
  if (weights != DType::f32) {
    nn::compact_linears(serial, weights, group_size);
    serial.compact_lm_head(weights, group_size);
    const nn::CompactReport report = nn::compact_linears(split, weights, group_size);
    BOOST_TEST(report.layers == 8);  // through the split layers to their parts
    split.compact_lm_head(weights, group_size);
  }
  const testing::DecodeComparison c = testing::compare_decoding(
      infer::Decoder{serial}, infer::Decoder{split, &group}, {5, 2, 7}, 97, 6);
  BOOST_TEST_MESSAGE("tensor parallel over " << group.size() << ", " << dtype_name(weights)
                                             << ": worst normalized error " << c.worst_error);
  BOOST_TEST(c.worst_error < 1e-5);
  BOOST_TEST(c.same_tokens);
}

}  // namespace

BOOST_AUTO_TEST_CASE(split_decoding_equals_serial_decoding_f32) {
  turbine::testing::on_each_device([](dist::ProcessGroup& group, Device device) {
    decode_matches_serial(group, device, DType::f32, 0);
  });
}

BOOST_AUTO_TEST_CASE(split_decoding_equals_serial_decoding_bf16_and_int8) {
  turbine::testing::on_each_device([](dist::ProcessGroup& group, Device device) {
    decode_matches_serial(group, device, DType::bf16, 0);
    // Scales per 8 inputs: the same groups whole on every rank's columns.
    decode_matches_serial(group, device, DType::i8, 8);
  });
}

BOOST_AUTO_TEST_CASE(split_forward_equals_serial_forward) {
  turbine::testing::on_each_device([](dist::ProcessGroup& group, Device device) {
    const autograd::NoGradGuard inference;
    nn::Bloom serial(config(), 12, device), split(config(), 12, device);
    dist::split_bloom(split, group);
    std::vector<int32_t> ids(2 * 9);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i * 13 % 97);
    const Tensor x = Tensor::from_vector<int32_t>({2, 9}, ids);
    BOOST_TEST(normalized_error(split.logits(x), serial.logits(x)) < 1e-5);
  });
}

BOOST_AUTO_TEST_CASE(a_group_that_does_not_divide_the_heads_is_refused) {
  dist::ProcessGroup group(dist::Communicator::world());
  nn::BloomConfig c = config();
  c.hidden_size = 24;
  c.n_head = group.size() == 2 ? 3 : 4;
  nn::Bloom model(c, 1);
  const std::string e = testing::error_of([&] { dist::split_bloom(model, group); });
  BOOST_TEST(testing::contains(
                 e, "does not divide the model's " + std::to_string(c.n_head) + " attention heads"),
             e);
}
