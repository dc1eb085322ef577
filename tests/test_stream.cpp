// Weight streaming (infer/stream.hpp): a model whose blocks come from a
// swap file (nvme) or, on a GPU, from host memory decodes a ragged batch to
// exactly the resident model's logits, in f32 and int8, through one slot
// (no prefetch) or two (reading the next layer while one computes), and
// reads every layer once per decode step; a budget that cannot hold one
// layer beside the embeddings is refused with the size it needs.
#define BOOST_TEST_MODULE stream
#include <boost/test/unit_test.hpp>

#include "autograd/tape.hpp"
#include "decode_compare.hpp"
#include "infer/generate.hpp"
#include "infer/stream.hpp"
#include "nn/compact.hpp"
#include "test_util.hpp"

using namespace turbine;

namespace {

nn::BloomConfig config() {
  nn::BloomConfig c;
  c.vocab_size = 97;
  c.hidden_size = 48;
  c.n_head = 6;
  c.n_layer = 4;
  return c;
}

struct Streamed {
  nn::Bloom model;
  std::unique_ptr<infer::BlockStreamer> streamer;
};

// The resident model's weights, its blocks streamed.
Streamed stream_of(const nn::Bloom& resident, Device device, DType type,
                   const infer::OffloadOptions& options) {
  Streamed s{nn::Bloom(config(), 99, device, nn::Bloom::Blocks::streamed), nullptr};
  for (const nn::Parameter& p : s.model.parameters())
    Tensor(p.tensor).copy_from(resident.parameter(p.name));
  s.model.set_training(false);
  int64_t resident_bytes = 0;
  if (type != DType::f32) resident_bytes += s.model.compact_lm_head(type);
  for (const nn::Parameter& p : s.model.parameters()) resident_bytes += int64_t(p.tensor.nbytes());
  s.streamer = std::make_unique<infer::BlockStreamer>(
      config(), device, type, 0, options, resident_bytes,
      [&](int64_t layer, nn::BloomBlock& block) {
        nn::ParameterList params;
        block.parameters(fmt::format("h.{}.", layer), params);
        for (const nn::Parameter& p : params)
          Tensor(p.tensor).copy_from(resident.parameter(p.name));
      });
  s.model.set_block_source(s.streamer.get());
  return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(streamed_decoding_equals_resident_decoding) {
  for (const Device device : testing::test_devices()) {
    for (const std::string far : {"nvme", "cpu"}) {
      if (far == "cpu" && device.is_cpu()) continue;  // host memory is no far tier for a CPU
      for (const DType type : {DType::f32, DType::i8}) {
        const nn::Bloom source(config(), 7, device);  // f32: what is staged
        nn::Bloom resident = source.deep_copy();
        resident.set_training(false);
        if (type != DType::f32) {
          nn::compact_linears(resident, type);
          resident.compact_lm_head(type);
        }
        // A budget for exactly one slot, then the default two.
        for (const double mb : {0.0, 1e-9}) {
          BOOST_TEST_CONTEXT(device.str() << " from " << far << ", " << dtype_name(type)
                                          << (mb > 0 ? ", one slot" : ", two slots")) {
            infer::OffloadOptions options;
            options.device = far;
            Streamed probe = stream_of(source, device, type, options);
            if (mb > 0) {  // the embeddings and one layer, and a little
              int64_t fixed = type != DType::f32 ? probe.model.compact_lm_head(type) : 0;
              for (const nn::Parameter& p : probe.model.parameters())
                fixed += int64_t(p.tensor.nbytes());
              options.max_resident_mb =
                  (double(fixed) + 1.5 * double(probe.streamer->layer_bytes())) / 1048576.0;
            }
            const Streamed s = stream_of(source, device, type, options);
            BOOST_TEST(s.streamer->slots() == (mb > 0 ? 1 : 2));
            const int64_t steps = 5;
            const testing::DecodeComparison c = testing::compare_decoding(
                infer::Decoder{resident}, infer::Decoder{s.model}, {4, 1, 6}, 97, steps);
            BOOST_TEST(c.worst_error == 0.0);
            BOOST_TEST(c.same_tokens);
            const infer::StreamStats stats = s.streamer->stats();
            // Every layer once per forward (prefill + steps), plus the prefetched ones.
            BOOST_TEST(stats.layers_read >= (steps + 1) * config().n_layer);
            BOOST_TEST(stats.layers_read <= (steps + 1) * config().n_layer + 2);
            BOOST_TEST(stats.bytes_read == double(stats.layers_read * s.streamer->layer_bytes()));
          }
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(int8_layers_stream_a_quarter_of_the_bytes) {
  const nn::Bloom resident(config(), 7);
  infer::OffloadOptions options;
  options.device = "nvme";
  const Streamed f32 = stream_of(resident, Device::cpu(), DType::f32, options);
  const Streamed i8 = stream_of(resident, Device::cpu(), DType::i8, options);
  const double ratio = double(f32.streamer->layer_bytes()) / double(i8.streamer->layer_bytes());
  BOOST_TEST_MESSAGE("f32 / int8 bytes per layer: " << ratio);
  BOOST_TEST(ratio > 3.5);  // biases, norms and scales stay f32
}

BOOST_AUTO_TEST_CASE(budgets_and_tiers_are_checked) {
  const nn::Bloom resident(config(), 7);
  infer::OffloadOptions options;
  options.device = "nvme";
  options.max_resident_mb = 0.01;
  std::string e =
      testing::error_of([&] { stream_of(resident, Device::cpu(), DType::f32, options); });
  BOOST_TEST(
      testing::contains(e, "max_resident_mb 0.01 holds less than the embeddings and LM head"), e);
  BOOST_TEST(testing::contains(e, "give at least"), e);
  options.max_resident_mb = 0;
  options.device = "cpu";
  e = testing::error_of([&] { stream_of(resident, Device::cpu(), DType::f32, options); });
  BOOST_TEST(testing::contains(e, "use nvme"), e);
  options.device = "nvme";
  options.nvme_path = "/nonexistent/folder";
  e = testing::error_of([&] { stream_of(resident, Device::cpu(), DType::f32, options); });
  BOOST_TEST(testing::contains(e, "nvme_path /nonexistent/folder is not a folder"), e);
}
