// Multi-modal causal attention (ops::mmca_masks, ops::mmca_attention,
// ag::mmca_attention) against a naive PyTorch implementation on fixed tensors
// (tests/golden/mmca.h5 from tools/make-golden-mmca) on the CPU and on cuda:0
// when there is one, its gradients by finite differences, and its bad input.
#define BOOST_TEST_MODULE mmca
#include <boost/test/unit_test.hpp>
#include <filesystem>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "grad_check.hpp"
#include "tensor/hdf5.hpp"
#include "test_util.hpp"

using namespace turbine;
using testing::check_close;
using testing::golden;

namespace {

constexpr double kTol = 1e-6;
// Gradients are sums over keys and queries: their order (vectorized at -O3,
// not in the -O1 sanitizer build) moves the last bits; 1.6e-6 was seen there.
constexpr double kGradTol = 1e-5;
constexpr int kCases = 3;

struct Case {
  std::vector<int32_t> kinds;
  int64_t batch = 0, keys = 0, queries = 0;
  Tensor q, k, v, dout, text_mask, image_mask, out, dq, dk, dv, causal_out;
  ops::AttentionOptions options;

  Case(int index, Device device) {
    const H5File f(golden("mmca.h5"), H5File::Mode::read);
    const std::string g = "case_" + std::to_string(index) + "/";
    const Tensor kind_tensor = f.read(g + "kinds");
    batch = kind_tensor.dim(0);
    keys = kind_tensor.dim(1);
    for (const int64_t kind : testing::ints(kind_tensor)) kinds.push_back(int32_t(kind));
    auto read = [&](const char* name) { return f.read(g + name).to(device); };
    q = read("q");
    k = read("k");
    v = read("v");
    dout = read("dout");
    text_mask = f.read(g + "text_mask");
    image_mask = f.read(g + "image_mask");
    out = f.read(g + "out");
    dq = f.read(g + "dq");
    dk = f.read(g + "dk");
    dv = f.read(g + "dv");
    causal_out = f.read(g + "causal_out");
    queries = q.dim(2);
    options.causal = true;
    options.alibi_slopes = f.read(g + "slopes").to_vector<float>();
  }
  ops::MmcaMasks masks(Device device) const {
    return ops::mmca_masks(kinds, batch, keys, queries, device);
  }
};

std::string on(const std::string& what, int index, Device device) {
  return fmt::format("case_{} {} on {}", index, what, device.str());
}

}  // namespace

BOOST_AUTO_TEST_CASE(golden_file_exists) {
  const std::string path = golden("mmca.h5");
  BOOST_REQUIRE_MESSAGE(std::filesystem::exists(path),
                        path +
                            " is missing: write it with tools/make-golden-mmca (needs "
                            "python3-torch and python3-h5py), or set TURBINE_SOURCE_ROOT");
}

BOOST_AUTO_TEST_CASE(masks_follow_the_rules) {
  for (int i = 0; i < kCases; ++i) {
    const Case c(i, Device::cpu());
    const ops::MmcaMasks m = c.masks(Device::cpu());
    BOOST_TEST(m.text.to_vector<uint8_t>() == c.text_mask.to_vector<uint8_t>(),
               boost::test_tools::per_element());
    BOOST_TEST(m.image.to_vector<uint8_t>() == c.image_mask.to_vector<uint8_t>(),
               boost::test_tools::per_element());
  }
}

BOOST_AUTO_TEST_CASE(forward_equals_pytorch) {
  for (const Device device : testing::test_devices())
    for (int i = 0; i < kCases; ++i) {
      const Case c(i, device);
      check_close(on("mmca out", i, device),
                  ops::mmca_attention(c.q, c.k, c.v, c.options, c.masks(device)), c.out, kTol);
      // Plain causal attention over the same tokens, for comparison.
      ops::AttentionOptions causal = c.options;
      causal.mask = ops::padding_mask(c.kinds, c.batch, c.keys, c.queries, device);
      check_close(on("causal out", i, device), ops::attention(c.q, c.k, c.v, causal, nullptr),
                  c.causal_out, kTol);
    }
}

BOOST_AUTO_TEST_CASE(backward_equals_pytorch) {
  for (const Device device : testing::test_devices())
    for (int i = 0; i < kCases; ++i) {
      const Case c(i, device);
      const Tensor q = testing::trainable(c.q), k = testing::trainable(c.k),
                   v = testing::trainable(c.v);
      const Tensor out = ag::mmca_attention(q, k, v, c.options, c.masks(device));
      check_close(on("ag out", i, device), out, c.out, kTol);
      autograd::backward(out, c.dout);
      check_close(on("dq", i, device), q.grad(), c.dq, kGradTol);
      check_close(on("dk", i, device), k.grad(), c.dk, kGradTol);
      check_close(on("dv", i, device), v.grad(), c.dv, kGradTol);
    }
}

BOOST_AUTO_TEST_CASE(gradients_match_finite_differences) {
  const std::vector<int32_t> kinds = {0, 1, 1, 1, 0, 0, 2, 2, 0, 0, -1,  //
                                      1, 1, 0, 0, 0, 0, 0, 2, 2, 2, 0};
  const int64_t B = 2, H = 2, T = 11, D = 8;
  // grad_check perturbs host memory: the CPU here; cuda:0's gradients are
  // checked against PyTorch's above.
  for (const Device device : {Device::cpu()}) {
    const ops::MmcaMasks masks = ops::mmca_masks(kinds, B, T, T, device);
    ops::AttentionOptions options;
    options.alibi_slopes = ops::alibi_slopes(int(H));
    const auto f = [&](const std::vector<Tensor>& in) {
      return std::vector<Tensor>{ag::mmca_attention(in[0], in[1], in[2], options, masks)};
    };
    const double error =
        testing::grad_check(f,
                            {testing::trainable(Tensor::randn({B, H, T, D}, 7, 1).to(device)),
                             testing::trainable(Tensor::randn({B, H, T, D}, 7, 2).to(device)),
                             testing::trainable(Tensor::randn({B, H, T, D}, 7, 3).to(device))},
                            1e-2f, 64);
    BOOST_TEST_MESSAGE("mmca finite differences on " << device.str() << ": " << error);
    BOOST_TEST(error < 2e-3);
  }
}

BOOST_AUTO_TEST_CASE(text_only_is_causal_attention) {
  // No image: the image part adds zeros, and MMCA is causal attention.
  const int64_t B = 2, H = 3, T = 20, D = 16;
  const std::vector<int32_t> kinds(size_t(B * T), ops::kTextToken);
  const Tensor q = Tensor::randn({B, H, T, D}, 5, 1), k = Tensor::randn({B, H, T, D}, 5, 2),
               v = Tensor::randn({B, H, T, D}, 5, 3);
  ops::AttentionOptions options;
  options.alibi_slopes = ops::alibi_slopes(int(H));
  const Tensor mmca =
      ops::mmca_attention(q, k, v, options, ops::mmca_masks(kinds, B, T, T, Device::cpu()));
  BOOST_TEST(testing::floats(mmca) == testing::floats(ops::attention(q, k, v, options, nullptr)),
             boost::test_tools::per_element());
  BOOST_TEST(!ops::padding_mask(kinds, B, T, T, Device::cpu()).defined());
}

BOOST_AUTO_TEST_CASE(bad_kinds_are_refused) {
  using testing::contains;
  using testing::error_of;
  const auto masks = [](std::vector<int32_t> kinds, int64_t batch, int64_t keys, int64_t queries) {
    return [=] { ops::mmca_masks(kinds, batch, keys, queries, Device::cpu()); };
  };
  BOOST_TEST(contains(error_of(masks({0, 1, 1, 0, 1, 0}, 1, 6, 6)), "image 1 of row 0 is split"));
  BOOST_TEST(contains(error_of(masks({0, -2, 0}, 1, 3, 3)), "kind -2"));
  BOOST_TEST(contains(error_of(masks({0, 0, 0}, 1, 4, 4)), "3 kinds for 1 rows of 4 keys"));
  BOOST_TEST(contains(error_of(masks({0, 0, 0}, 1, 3, 4)), "with 4 queries"));
  // Adjacent images and an image again after padding are fine; a reused
  // number after another image is not.
  BOOST_TEST(error_of(masks({1, 1, 2, 2, 0, 3}, 1, 6, 6)) == "(no error)");
  BOOST_TEST(contains(error_of(masks({1, 1, 2, 2, 1}, 1, 5, 5)), "image 1 of row 0 is split"));
  const auto attend_with_mask = [] {
    const Tensor x = Tensor::randn({1, 1, 2, 4}, 1, 1);
    ops::AttentionOptions options;
    options.mask = Tensor::from_vector<uint8_t>({2, 2}, std::vector<uint8_t>{1, 0, 1, 1});
    const std::vector<int32_t> kinds = {0, 0};
    ops::mmca_attention(x, x, x, options, ops::mmca_masks(kinds, 1, 2, 2, Device::cpu()));
  };
  BOOST_TEST(contains(error_of(attend_with_mask), "the masks come from the token kinds"));
}
