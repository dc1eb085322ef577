// Every op's backward against finite differences, attention against a naive
// reference, and the errors bad inputs raise.
#define BOOST_TEST_MODULE ops_grad
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/functions.hpp"
#include "core/error.hpp"
#include "grad_check.hpp"

using namespace turbine;
using testing::grad_check;
using testing::param;

namespace {
constexpr double kTol = 1e-2;  // normalized error of f32 central differences
using Ins = std::vector<Tensor>;
std::vector<Tensor> one(Tensor t) { return {t}; }

bool error_mentions(const std::function<void()>& fn, const std::vector<std::string>& words) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string what = e.what();
    for (const auto& w : words)
      if (what.find(w) == std::string::npos) {
        BOOST_TEST_MESSAGE("message lacks '" << w << "': " << what);
        return false;
      }
    return true;
  }
  return false;
}
}  // namespace

BOOST_AUTO_TEST_CASE(linear_grad) {
  auto f = [](const Ins& in) { return one(ag::linear(in[0], in[1], in[2])); };
  BOOST_TEST(grad_check(f, {param({2, 3, 5}, 1), param({4, 5}, 2), param({4}, 3)}) < kTol);
  auto no_bias = [](const Ins& in) { return one(ag::linear(in[0], in[1], Tensor())); };
  BOOST_TEST(grad_check(no_bias, {param({6, 5}, 4), param({3, 5}, 5)}) < kTol);
}

BOOST_AUTO_TEST_CASE(add_bias_grad) {
  auto f = [](const Ins& in) { return one(ag::add_bias(in[0], in[1])); };
  BOOST_TEST(grad_check(f, {param({2, 3, 5}, 1), param({5}, 2)}) < kTol);
}

BOOST_AUTO_TEST_CASE(matmul_grad) {
  auto f = [](const Ins& in) { return one(ag::matmul(in[0], in[1])); };
  BOOST_TEST(grad_check(f, {param({3, 4}, 1), param({4, 5}, 2)}) < kTol);
  BOOST_TEST(grad_check(f, {param({2, 3, 4}, 3), param({2, 4, 5}, 4)}) < kTol);
}

BOOST_AUTO_TEST_CASE(add_scale_reshape_grad) {
  auto f = [](const Ins& in) {
    return one(ag::reshape(ag::add(ag::scale(in[0], -1.5f), in[1]), {4, 6}));
  };
  BOOST_TEST(grad_check(f, {param({2, 3, 4}, 1), param({2, 3, 4}, 2)}) < kTol);
  // A tensor used twice sums its gradients.
  auto twice = [](const Ins& in) { return one(ag::add(in[0], ag::gelu(in[0]))); };
  BOOST_TEST(grad_check(twice, {param({5, 7}, 3)}) < kTol);
}

BOOST_AUTO_TEST_CASE(gelu_grad) {
  auto f = [](const Ins& in) { return one(ag::gelu(in[0])); };
  BOOST_TEST(grad_check(f, {param({64, 33}, 1, 2.0f)}, 1e-2f, 200) < kTol);
}

BOOST_AUTO_TEST_CASE(gelu_matches_formula) {
  const Tensor x = Tensor::randn({1000}, 3, 0, 3.0f);
  const auto y = ops::gelu(x).to_vector<float>();
  const auto xs = x.to_vector<float>();
  for (size_t i = 0; i < xs.size(); ++i) {
    const double v = xs[i];
    const double ref = 0.5 * v * (1 + std::tanh(0.79788456 * v * (1 + 0.044715 * v * v)));
    BOOST_TEST(std::abs(y[i] - ref) < 1e-6 + 1e-6 * std::abs(ref));
  }
}

BOOST_AUTO_TEST_CASE(dropout_grad_and_rate) {
  const ops::DropoutRng rng{5, 6, 7};
  auto f = [&](const Ins& in) { return one(ag::dropout(in[0], 0.3f, rng)); };
  BOOST_TEST(grad_check(f, {param({40, 50}, 1)}) < kTol);
  const auto y = ops::dropout(Tensor::full({100000}, 1.0f), 0.3f, rng).to_vector<float>();
  int dropped = 0;
  for (float v : y) {
    dropped += v == 0.0f;
    BOOST_TEST((v == 0.0f || std::abs(v - 1.0f / 0.7f) < 1e-6));
  }
  BOOST_TEST(std::abs(dropped / 100000.0 - 0.3) < 0.01);
  // The mask is a function of the counter: the same rng gives the same mask.
  const auto again = ops::dropout(Tensor::full({100000}, 1.0f), 0.3f, rng).to_vector<float>();
  BOOST_TEST(y == again);
}

BOOST_AUTO_TEST_CASE(layer_norm_grad) {
  auto f = [](const Ins& in) { return one(ag::layer_norm(in[0], in[1], in[2], 1e-5f)); };
  BOOST_TEST(grad_check(f, {param({3, 4, 17}, 1), param({17}, 2), param({17}, 3)}) < kTol);
}

BOOST_AUTO_TEST_CASE(softmax_grad) {
  auto f = [](const Ins& in) { return one(ag::softmax(in[0])); };
  BOOST_TEST(grad_check(f, {param({6, 11}, 1)}) < kTol);
}

BOOST_AUTO_TEST_CASE(cross_entropy_grad_and_value) {
  const Tensor targets = Tensor::from_vector<int64_t>({2, 3}, std::vector<int64_t>{1, 4, -100, 0, 2, 3});
  auto f = [&](const Ins& in) { return one(ag::cross_entropy(in[0], targets, -100)); };
  BOOST_TEST(grad_check(f, {param({2, 3, 5}, 1)}) < kTol);
  // Value: mean of -log softmax at the 5 counted targets.
  const Tensor logits = Tensor::randn({6, 5}, 1, 2);
  const auto l = logits.to_vector<float>();
  const auto t = targets.to_vector<int64_t>();
  double total = 0;
  for (int r = 0; r < 6; ++r) {
    if (t[r] == -100) continue;
    double z = 0;
    for (int c = 0; c < 5; ++c) z += std::exp(double(l[r * 5 + c]));
    total += std::log(z) - l[r * 5 + t[r]];
  }
  BOOST_TEST(std::abs(ops::cross_entropy(logits, targets.view({6}), -100, nullptr).item() -
                      total / 5) < 1e-5);
}

BOOST_AUTO_TEST_CASE(embedding_grad) {
  const Tensor ids = Tensor::from_vector<int32_t>({2, 3}, std::vector<int32_t>{0, 3, 3, 1, 4, 0});
  auto f = [&](const Ins& in) { return one(ag::embedding(ids, in[0])); };
  BOOST_TEST(grad_check(f, {param({5, 4}, 1)}) < kTol);
}

BOOST_AUTO_TEST_CASE(attention_grad_causal_alibi) {
  ops::AttentionOptions o;
  o.causal = true;
  o.alibi_slopes = ops::alibi_slopes(3);
  auto f = [&](const Ins& in) { return one(ag::attention(in[0], in[1], in[2], o)); };
  BOOST_TEST(grad_check(f, {param({2, 3, 7, 4}, 1), param({2, 3, 7, 4}, 2),
                            param({2, 3, 7, 4}, 3)}) < kTol);
}

BOOST_AUTO_TEST_CASE(attention_grad_mask_and_offset) {
  // A boolean mask per batch (multi-modal style), and causal decoding with
  // fewer queries than keys (a KV cache).
  std::vector<uint8_t> m(2 * 5 * 6);
  for (size_t i = 0; i < m.size(); ++i) m[i] = (philox4x32(3, 0, i)[0] % 3) != 0;
  m[0 * 6 + 0] = 1;
  ops::AttentionOptions masked;
  masked.causal = false;
  masked.mask = Tensor::from_vector<uint8_t>({2, 5, 6}, m);
  auto f = [&](const Ins& in) { return one(ag::attention(in[0], in[1], in[2], masked)); };
  BOOST_TEST(grad_check(f, {param({2, 2, 5, 3}, 1), param({2, 2, 6, 3}, 2),
                            param({2, 2, 6, 3}, 3)}) < kTol);
  ops::AttentionOptions offset;
  offset.alibi_slopes = ops::alibi_slopes(2);
  auto g = [&](const Ins& in) { return one(ag::attention(in[0], in[1], in[2], offset)); };
  BOOST_TEST(grad_check(g, {param({1, 2, 3, 4}, 4), param({1, 2, 8, 4}, 5),
                            param({1, 2, 8, 4}, 6)}) < kTol);
}

BOOST_AUTO_TEST_CASE(attention_matches_naive_across_blocks) {
  // T = 150 spans three key blocks of 64; compare with the explicit softmax.
  const int B = 1, H = 2, T = 150, D = 16;
  const Tensor q = Tensor::randn({B, H, T, D}, 4, 1), k = Tensor::randn({B, H, T, D}, 4, 2),
               v = Tensor::randn({B, H, T, D}, 4, 3);
  ops::AttentionOptions o;
  o.alibi_slopes = ops::alibi_slopes(H);
  const auto out = ops::attention(q, k, v, o, nullptr).to_vector<float>();
  const auto Q = q.to_vector<float>(), K = k.to_vector<float>(), V = v.to_vector<float>();
  std::vector<float> ref(out.size());
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < T; ++i) {
      std::vector<double> s(i + 1);
      double mx = -1e300;
      for (int j = 0; j <= i; ++j) {
        double dot = 0;
        for (int d = 0; d < D; ++d) dot += Q[(h * T + i) * D + d] * K[(h * T + j) * D + d];
        s[j] = dot / std::sqrt(double(D)) - o.alibi_slopes[h] * (i - j);
        mx = std::max(mx, s[j]);
      }
      double z = 0;
      for (auto& x : s) z += (x = std::exp(x - mx));
      for (int d = 0; d < D; ++d) {
        double acc = 0;
        for (int j = 0; j <= i; ++j) acc += s[j] / z * V[(h * T + j) * D + d];
        ref[(h * T + i) * D + d] = float(acc);
      }
    }
  BOOST_TEST(testing::norm_error(out, ref) < 1e-6);
}

BOOST_AUTO_TEST_CASE(attention_reads_a_kv_cache_in_place) {
  // Decoding: the keys and values of 40 tokens sit in a cache of 64; the
  // last 3 tokens' queries attend (causal, ALiBi) through narrowed views,
  // with the same bits as on dense copies. Backward refuses the views.
  const int B = 2, H = 3, T_max = 64, T = 40, D = 16;
  const Tensor k_cache = Tensor::randn({B, H, T_max, D}, 5, 1),
               v_cache = Tensor::randn({B, H, T_max, D}, 5, 2), q = Tensor::randn({B, H, 3, D}, 5, 3);
  const Tensor k = k_cache.narrow(2, 0, T), v = v_cache.narrow(2, 0, T);
  BOOST_TEST(!k.is_contiguous());
  ops::AttentionOptions o;
  o.alibi_slopes = ops::alibi_slopes(H);
  Tensor lse_view, lse_dense;
  const auto in_place = ops::attention(q, k, v, o, &lse_view).to_vector<float>();
  const auto dense = ops::attention(q, k.contiguous(), v.contiguous(), o, &lse_dense).to_vector<float>();
  BOOST_TEST(in_place == dense);
  BOOST_TEST(lse_view.to_vector<float>() == lse_dense.to_vector<float>());
  Tensor dq, dk, dv;
  BOOST_CHECK_THROW(ops::attention_backward(q, k, v, Tensor::from_vector<float>({B, H, 3, D}, dense),
                                            lse_dense, Tensor::randn({B, H, 3, D}, 5, 4), o, &dq,
                                            &dk, &dv),
                    std::exception);
  // k and v laid out differently, or a view whose rows are not dense: refused.
  BOOST_CHECK_THROW(ops::attention(q, k, v.contiguous().narrow(2, 0, T), o, nullptr), std::exception);
  const Tensor q8 = q.narrow(3, 0, 8).contiguous();
  BOOST_CHECK_THROW(ops::attention(q8, k_cache.narrow(3, 0, 8).narrow(2, 0, T),
                                   v_cache.narrow(3, 0, 8).narrow(2, 0, T), o, nullptr),
                    std::exception);
}

BOOST_AUTO_TEST_CASE(alibi_slopes_match_bloom) {
  // Values from BLOOM's build_alibi_tensor.
  const auto s6 = ops::alibi_slopes(6);
  const std::vector<float> ref6 = {0.25f, 0.0625f, 0.015625f, 0.00390625f, 0.5f, 0.125f};
  BOOST_TEST(s6 == ref6);
  const auto s8 = ops::alibi_slopes(8);
  BOOST_TEST(s8[0] == 0.5f);
  BOOST_TEST(s8[7] == 0.00390625f);
  BOOST_TEST(ops::alibi_slopes(112).size() == 112u);
}

BOOST_AUTO_TEST_CASE(qkv_and_heads_grad) {
  auto f = [](const Ins& in) {
    const ops::Qkv qkv = ag::split_qkv(in[0], 2);
    return std::vector<Tensor>{qkv.q, qkv.k, qkv.v};
  };
  BOOST_TEST(grad_check(f, {param({2, 3, 2 * 3 * 4}, 1)}) < kTol);
  auto g = [](const Ins& in) { return one(ag::merge_heads(in[0])); };
  BOOST_TEST(grad_check(g, {param({2, 3, 4, 5}, 2)}) < kTol);
  // BLOOM's layout: fused channel (h, 3, d) holds q, k, v of head h.
  const Tensor fused = Tensor::randn({1, 1, 2 * 3 * 2}, 1, 9);
  const auto parts = ops::split_qkv(fused, 2);
  const auto x = fused.to_vector<float>();
  BOOST_TEST(parts.q.to_vector<float>() == (std::vector<float>{x[0], x[1], x[6], x[7]}));
  BOOST_TEST(parts.v.to_vector<float>() == (std::vector<float>{x[4], x[5], x[10], x[11]}));
}

BOOST_AUTO_TEST_CASE(gather_scatter_rows_grad) {
  const Tensor index = Tensor::from_vector<int64_t>({2, 2}, std::vector<int64_t>{3, 0, 1, 4});
  auto f = [&](const Ins& in) { return one(ag::gather_rows(in[0], index)); };
  BOOST_TEST(grad_check(f, {param({2, 5, 3}, 1)}) < kTol);
  auto g = [&](const Ins& in) { return one(ag::scatter_rows(in[0], index, in[1])); };
  BOOST_TEST(grad_check(g, {param({2, 5, 3}, 2), param({2, 2, 3}, 3)}) < kTol);
  // gather then scatter of a transformed copy is the token-dropping round trip.
  auto h = [&](const Ins& in) {
    return one(ag::scatter_rows(in[0], index, ag::gelu(ag::gather_rows(in[0], index))));
  };
  BOOST_TEST(grad_check(h, {param({2, 5, 3}, 4)}) < kTol);
}

BOOST_AUTO_TEST_CASE(bad_inputs_name_op_and_shapes) {
  const Tensor x = Tensor::randn({2, 3}, 1, 1), w = Tensor::randn({4, 5}, 1, 2);
  BOOST_TEST(error_mentions([&] { ops::linear(x, w, Tensor()); }, {"linear", "[2, 3]", "[4, 5]"}));
  const Tensor ints = Tensor::zeros({3, 4}, DType::i32);
  BOOST_TEST(error_mentions([&] { ops::matmul(ints, w); }, {"matmul", "f32", "i32"}));
  BOOST_TEST(error_mentions([&] { ops::add(x, w); }, {"add", "[2, 3]", "[4, 5]"}));
  const Tensor ids = Tensor::from_vector<int64_t>({2}, std::vector<int64_t>{1, 9});
  BOOST_TEST(error_mentions([&] { ops::embedding(ids, w); }, {"embedding", "9"}));
  const Tensor q = Tensor::randn({1, 2, 3, 4}, 1, 3), k = Tensor::randn({1, 2, 3, 5}, 1, 4);
  BOOST_TEST(error_mentions([&] { ops::attention(q, k, k, {}, nullptr); },
                            {"attention", "[1, 2, 3, 4]", "[1, 2, 3, 5]"}));
  const Tensor dup = Tensor::from_vector<int64_t>({1, 2}, std::vector<int64_t>{2, 2});
  BOOST_TEST(error_mentions([&] { ops::gather_rows(Tensor::randn({1, 4, 2}, 1, 5), dup); },
                            {"gather_rows", "twice"}));
  // Without a GPU (or without the CUDA backend) asking for one names it.
  if (kernels::cuda_device_count() == 0)
    BOOST_TEST(error_mentions([&] { backend_for(Device::cuda(0)); }, {"cuda:0"}));
}

// bf16/f16 math modes: gemm and attention equal f32 math on inputs rounded
// to the 16-bit type (what tensor cores compute), and differ from plain f32.
BOOST_AUTO_TEST_CASE(math_modes_round_matrix_inputs) {
  kernels::Backend& be = kernels::cpu_backend();
  const Tensor a = Tensor::randn({5, 7}, 3, 1), b = Tensor::randn({7, 6}, 3, 2);
  auto rounded = [&](const Tensor& x, DType type) { return x.to(type).to(DType::f32); };
  auto gemm = [&](const Tensor& x, const Tensor& y) {
    Tensor c = Tensor::empty({5, 6});
    be.gemm(false, false, 5, 6, 7, 1.0f, x.data<float>(), 7, y.data<float>(), 6, 0.0f,
            c.data<float>(), 6);
    return c.to_vector<float>();
  };
  const auto plain = gemm(a, b);
  for (const auto& [mode, type] : {std::pair{kernels::MathMode::bf16, DType::bf16},
                                   std::pair{kernels::MathMode::f16, DType::f16}}) {
    const auto expected = gemm(rounded(a, type), rounded(b, type));
    std::vector<float> got;
    {
      kernels::MathModeGuard guard(be, mode);
      got = gemm(a, b);
    }
    BOOST_TEST((be.math_mode() == kernels::MathMode::f32));  // the guard restored it
    BOOST_TEST(got == expected);
    BOOST_TEST(got != plain);
  }
  const Tensor q = Tensor::randn({1, 2, 4, 8}, 3, 3), k = Tensor::randn({1, 2, 4, 8}, 3, 4),
               v = Tensor::randn({1, 2, 4, 8}, 3, 5);
  ops::AttentionOptions causal;
  causal.causal = true;
  const auto expected =
      ops::attention(rounded(q, DType::bf16), rounded(k, DType::bf16), rounded(v, DType::bf16),
                     causal, nullptr)
          .to_vector<float>();
  kernels::MathModeGuard guard(be, kernels::MathMode::bf16);
  BOOST_TEST(ops::attention(q, k, v, causal, nullptr).to_vector<float>() == expected);
}

BOOST_AUTO_TEST_CASE(no_grad_mode_records_nothing) {
  const Tensor w = param({4, 3}, 1), x = Tensor::randn({2, 3}, 1, 2);
  autograd::clear_tape();
  {
    autograd::NoGradGuard guard;
    const Tensor y = ag::gelu(ag::linear(x, w, Tensor()));
    BOOST_TEST(!y.requires_grad());
    BOOST_TEST(autograd::tape_size() == 0u);
  }
  const Tensor y = ag::gelu(ag::linear(x, w, Tensor()));
  BOOST_TEST(y.requires_grad());
  BOOST_TEST(autograd::tape_size() == 2u);
  autograd::clear_tape();
}

BOOST_AUTO_TEST_CASE(attention_memory_does_not_grow_with_t_squared) {
  // T = 2048: a materialized score matrix would need B*H*T*T*4 = 32 MiB.
  const int64_t B = 1, H = 2, T = 2048, D = 32;
  const Tensor q = Tensor::randn({B, H, T, D}, 8, 1), k = Tensor::randn({B, H, T, D}, 8, 2),
               v = Tensor::randn({B, H, T, D}, 8, 3);
  reset_peak_memory(Device::cpu());
  const int64_t before = memory_stats(Device::cpu()).current_bytes;
  Tensor lse;
  const Tensor out = ops::attention(q, k, v, {}, &lse);
  Tensor dq, dk, dv;
  ops::attention_backward(q, k, v, out, lse, out, {}, &dq, &dk, &dv);
  const int64_t grown = memory_stats(Device::cpu()).peak_bytes - before;
  const int64_t outputs = out.nbytes() + lse.nbytes() + dq.nbytes() + dk.nbytes() + dv.nbytes();
  BOOST_TEST(grown == outputs);  // nothing but the results themselves
  BOOST_TEST(grown < B * H * T * T * 4 / 4);
}

BOOST_AUTO_TEST_CASE(attention_with_positions_equals_masked_full_attention) {
  // Token dropping: attention over kept tokens at their original positions
  // equals full attention with the dropped keys masked out, at the kept rows.
  const int64_t B = 2, H = 3, T = 70, D = 8;
  std::vector<int64_t> kept_rows[2] = {{}, {}};
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      if (philox4x32(11, uint64_t(b), uint64_t(t))[0] % 3 != 0 || t == 0) kept_rows[b].push_back(t);
  const int64_t K = std::min(kept_rows[0].size(), kept_rows[1].size());
  std::vector<int64_t> positions;
  for (int64_t b = 0; b < B; ++b) positions.insert(positions.end(), kept_rows[b].begin(), kept_rows[b].begin() + K);
  const Tensor index = Tensor::from_vector<int64_t>({B, K}, positions);
  const Tensor q = Tensor::randn({B, H, T, D}, 12, 1), k = Tensor::randn({B, H, T, D}, 12, 2),
               v = Tensor::randn({B, H, T, D}, 12, 3);
  // Compact q, k, v: (B, H, K, D) by gathering rows of (B*H) planes.
  auto compact = [&](const Tensor& x) {
    std::vector<float> out;
    const auto all = x.to_vector<float>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < K; ++i)
          for (int64_t d = 0; d < D; ++d)
            out.push_back(all[((b * H + h) * T + positions[b * K + i]) * D + d]);
    return Tensor::from_vector<float>({B, H, K, D}, out);
  };
  ops::AttentionOptions dropped;
  dropped.alibi_slopes = ops::alibi_slopes(H);
  dropped.positions = index;
  const auto ours = ops::attention(compact(q), compact(k), compact(v), dropped, nullptr).to_vector<float>();
  std::vector<uint8_t> mask(B * T * T, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < K; ++j) mask[(b * T + positions[b * K + i]) * T + positions[b * K + j]] = 1;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) mask[(b * T + t) * T + t] |= 1;  // rows of dropped queries
  ops::AttentionOptions full;
  full.alibi_slopes = dropped.alibi_slopes;
  full.mask = Tensor::from_vector<uint8_t>({B, T, T}, mask);
  const Tensor reference = compact(ops::attention(q, k, v, full, nullptr));
  BOOST_TEST(testing::norm_error(ours, reference.to_vector<float>()) < 1e-6);
  // And its gradient.
  auto f = [&](const Ins& in) { return one(ag::attention(in[0], in[1], in[2], dropped)); };
  BOOST_TEST(grad_check(f, {param({B, H, K, D}, 21), param({B, H, K, D}, 22),
                            param({B, H, K, D}, 23)}) < kTol);
}

// overlap_comm's hook: a leaf is reported complete right after the last node
// that adds to its gradient, so the last layer's weight is ready while the
// first layer's backward has not run yet; an unused leaf is reported at the end.
BOOST_AUTO_TEST_CASE(grad_ready_watch_reports_leaves_in_backward_order) {
  const Tensor x = Tensor::randn({3, 4}, 1, 1);
  const Tensor w1 = param({5, 4}, 2), w2 = param({2, 5}, 3), unused = param({2}, 4);
  const Tensor y = ag::linear(ag::gelu(ag::linear(x, w1, Tensor())), w2, Tensor());
  std::vector<std::pair<size_t, bool>> events;  // (leaf, w1's gradient exists yet)
  autograd::GradReadyWatch watch{
      {w1.autograd_meta(), w2.autograd_meta(), unused.autograd_meta()},
      [&](size_t leaf) { events.emplace_back(leaf, w1.grad().defined()); }};
  autograd::backward(y, Tensor::full({3, 2}, 1.0f), &watch);
  BOOST_TEST_REQUIRE(events.size() == 3u);
  BOOST_TEST(events[0].first == 1u);  // w2 first,
  BOOST_TEST(!events[0].second);      // before w1's gradient is computed
  BOOST_TEST(events[1].first == 0u);
  BOOST_TEST(events[1].second);
  BOOST_TEST(events[2].first == 2u);  // untouched: at the end
}

// ---- PPO and image-model ops (issue 12) ----------------------------------------------

namespace {
// x with every element at least `gap` from each of `points` (finite
// differences must not step across a kink of relu, clamp, min or max).
Tensor away_from(const Tensor& x, std::vector<float> points, float gap = 0.05f) {
  auto v = x.to_vector<float>();
  for (float& e : v)
    for (float p : points)
      if (std::abs(e - p) < gap) e = e < p ? p - gap : p + gap;
  Tensor out = Tensor::from_vector<float>(x.shape(), v);
  out.set_requires_grad(x.requires_grad());
  return out;
}
// Distinct values 0.05 apart in a random order: max pooling without near-ties.
Tensor distinct_values(const Shape& shape, uint64_t stream) {
  const int64_t n = shape_numel(shape);
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(order[i], order[philox4x32(5, stream, i)[0] % (i + 1)]);
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = 0.05f * (order[i] - n / 2) + 0.01f;
  Tensor t = Tensor::from_vector<float>(shape, v);
  t.set_requires_grad(true);
  return t;
}
std::vector<float> host(const Tensor& t) {
  return t.to_vector<float>();
}
}  // namespace

BOOST_AUTO_TEST_CASE(unary_grads_and_values) {
  auto f_exp = [](const Ins& in) { return one(ag::exp(in[0])); };
  BOOST_TEST(grad_check(f_exp, {param({4, 9}, 1)}) < kTol);
  // log of positive inputs: exp(x) > 0, through two ops.
  auto f_log = [](const Ins& in) { return one(ag::log(ag::add(in[0], in[0]))); };
  const Tensor positive = away_from(param({5, 7}, 2, 0.5f), {0.0f}, 0.3f);
  std::vector<float> abs_values = host(positive);
  for (float& v : abs_values) v = std::abs(v);
  Tensor pos = Tensor::from_vector<float>({5, 7}, abs_values);
  pos.set_requires_grad(true);
  BOOST_TEST(grad_check(f_log, {pos}) < kTol);
  auto f_relu = [](const Ins& in) { return one(ag::relu(in[0])); };
  BOOST_TEST(grad_check(f_relu, {away_from(param({6, 8}, 3), {0.0f})}) < kTol);
  auto f_log_sigmoid = [](const Ins& in) { return one(ag::log_sigmoid(ag::scale(in[0], 8.0f))); };
  BOOST_TEST(grad_check(f_log_sigmoid, {param({6, 8}, 5)}) < kTol);
  auto f_clamp = [](const Ins& in) { return one(ag::clamp(in[0], -0.5f, 0.7f)); };
  BOOST_TEST(grad_check(f_clamp, {away_from(param({6, 8}, 4), {-0.5f, 0.7f})}) < kTol);
  // Values against libm.
  const Tensor x = Tensor::randn({1000}, 9, 1, 3.0f);
  const auto xs = host(x), e = host(ops::exp(x)), r = host(ops::relu(x)),
             c = host(ops::clamp(x, -1.0f, 2.0f));
  for (size_t i = 0; i < xs.size(); ++i) {
    BOOST_TEST(std::abs(e[i] - std::exp(double(xs[i]))) <= 1e-6 * std::exp(double(xs[i])));
    BOOST_TEST(r[i] == std::max(xs[i], 0.0f));
    BOOST_TEST(c[i] == std::clamp(xs[i], -1.0f, 2.0f));
  }
  const auto l = host(ops::log(ops::exp(x)));
  for (size_t i = 0; i < xs.size(); ++i) BOOST_TEST(std::abs(l[i] - xs[i]) < 1e-5);
  // log_sigmoid against libm, and finite far out where a naive log(1 / (1 + e^-x)) is not.
  const auto ls = host(ops::log_sigmoid(ops::scale(x, 40.0f)));
  for (size_t i = 0; i < xs.size(); ++i) {
    const double z = 40.0 * double(xs[i]);
    const double expected = z < 0 ? z - std::log1p(std::exp(z)) : -std::log1p(std::exp(-z));
    BOOST_TEST(std::abs(ls[i] - expected) <= 1e-5 * std::max(1.0, std::abs(expected)));
  }
  // Gradients outside clamp's range and below relu's kink are exactly zero.
  const Tensor edge = Tensor::from_vector<float>({4}, std::vector<float>{-2.0f, -0.5f, 0.5f, 3.0f});
  Tensor dx;
  ops::clamp_backward(edge, -0.5f, 0.5f, Tensor::full({4}, 1.0f), &dx);
  BOOST_TEST(host(dx) == (std::vector<float>{0.0f, 1.0f, 1.0f, 0.0f}));  // inclusive, as PyTorch
  Tensor dr;
  ops::relu_backward(edge, Tensor::full({4}, 1.0f), &dr);
  BOOST_TEST(host(dr) == (std::vector<float>{0.0f, 0.0f, 1.0f, 1.0f}));
}

BOOST_AUTO_TEST_CASE(mul_grads_with_broadcasting) {
  auto f = [](const Ins& in) { return one(ag::mul(in[0], in[1])); };
  // Same shape; a trailing-dims operand either side; keepdim (B, T, 1); per
  // channel (1, C, 1, 1); a one-element scalar.
  BOOST_TEST(grad_check(f, {param({2, 3, 4}, 1), param({2, 3, 4}, 2)}) < kTol);
  BOOST_TEST(grad_check(f, {param({2, 3, 4}, 3), param({4}, 4)}) < kTol);
  BOOST_TEST(grad_check(f, {param({3, 4}, 5), param({2, 3, 4}, 6)}) < kTol);
  BOOST_TEST(grad_check(f, {param({2, 3, 4}, 7), param({2, 3, 1}, 8)}) < kTol);
  BOOST_TEST(grad_check(f, {param({2, 3, 4, 5}, 9), param({1, 3, 1, 1}, 10)}) < kTol);
  BOOST_TEST(grad_check(f, {param({3, 5}, 11), param({1}, 12)}) < kTol);
  // Values: a (2, 3) * b (3) and * c (2, 1).
  const Tensor a = Tensor::from_vector<float>({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  const Tensor b = Tensor::from_vector<float>({3}, std::vector<float>{10, 20, 30});
  const Tensor c = Tensor::from_vector<float>({2, 1}, std::vector<float>{-1, 2});
  BOOST_TEST(host(ops::mul(a, b)) == (std::vector<float>{10, 40, 90, 40, 100, 180}));
  BOOST_TEST(host(ops::mul(c, a)) == (std::vector<float>{-1, -2, -3, 8, 10, 12}));
}

BOOST_AUTO_TEST_CASE(minimum_maximum_grads_and_ties) {
  // b = a +- (0.1 .. 1): no pair within a finite-difference step.
  const Tensor a = param({4, 6}, 1);
  auto av = host(a), bv = av;
  const auto noise = host(Tensor::randn({24}, 3, 3));
  for (size_t i = 0; i < bv.size(); ++i)
    bv[i] += (i % 3 == 0 ? -1.0f : 1.0f) * (0.1f + 0.9f * std::min(1.0f, std::abs(noise[i])));
  Tensor b = Tensor::from_vector<float>({4, 6}, bv);
  b.set_requires_grad(true);
  auto fmin = [](const Ins& in) { return one(ag::minimum(in[0], in[1])); };
  auto fmax = [](const Ins& in) { return one(ag::maximum(in[0], in[1])); };
  BOOST_TEST(grad_check(fmin, {a, b}) < kTol);
  BOOST_TEST(grad_check(fmax, {a, b}) < kTol);
  // Broadcast: x (4, 6) against a per-column threshold t (6), kept apart.
  const Tensor t = param({6}, 2);
  auto xv = host(param({4, 6}, 3));
  const auto tv = host(t);
  for (size_t i = 0; i < xv.size(); ++i)
    if (std::abs(xv[i] - tv[i % 6]) < 0.05f) xv[i] = tv[i % 6] + 0.1f;
  Tensor x = Tensor::from_vector<float>({4, 6}, xv);
  x.set_requires_grad(true);
  BOOST_TEST(grad_check(fmin, {x, t}) < kTol);
  BOOST_TEST(grad_check(fmax, {t, x}) < kTol);
  // Values, and ties split the gradient in halves (torch.minimum).
  const Tensor p = Tensor::from_vector<float>({3}, std::vector<float>{1, 5, 2});
  const Tensor q = Tensor::from_vector<float>({3}, std::vector<float>{3, 4, 2});
  BOOST_TEST(host(ops::minimum(p, q)) == (std::vector<float>{1, 4, 2}));
  BOOST_TEST(host(ops::maximum(p, q)) == (std::vector<float>{3, 5, 2}));
  Tensor dp, dq;
  ops::minimum_backward(p, q, Tensor::full({3}, 1.0f), &dp, &dq);
  BOOST_TEST(host(dp) == (std::vector<float>{1, 0, 0.5f}));
  BOOST_TEST(host(dq) == (std::vector<float>{0, 1, 0.5f}));
}

BOOST_AUTO_TEST_CASE(sum_mean_grads_values_and_shapes) {
  const Tensor x = param({2, 3, 5}, 1);
  BOOST_TEST(grad_check([](const Ins& in) { return one(ag::sum(in[0])); }, {x}) < kTol);
  BOOST_TEST(grad_check([](const Ins& in) { return one(ag::mean(in[0])); }, {x}) < kTol);
  BOOST_TEST(grad_check([](const Ins& in) { return one(ag::sum_last(in[0])); }, {x}) < kTol);
  BOOST_TEST(grad_check([](const Ins& in) { return one(ag::mean_last(in[0], true)); }, {x}) < kTol);
  // Shapes: (1) for all; (...) or (..., 1) over the last dim; (1) for 1-D x.
  BOOST_TEST(ops::sum(x).shape() == Shape({1}));
  BOOST_TEST(ops::sum_last(x).shape() == Shape({2, 3}));
  BOOST_TEST(ops::mean_last(x, true).shape() == Shape({2, 3, 1}));
  BOOST_TEST(ops::sum_last(Tensor::randn({7}, 1, 1)).shape() == Shape({1}));
  const auto v = host(x);
  double total = 0;
  for (float e : v) total += e;
  BOOST_TEST(std::abs(ops::sum(x).item() - total) < 1e-5);
  BOOST_TEST(std::abs(ops::mean(x).item() - total / 30) < 1e-6);
  const auto rows = host(ops::mean_last(x));
  for (int r = 0; r < 6; ++r) {
    double row = 0;
    for (int c = 0; c < 5; ++c) row += v[r * 5 + c];
    BOOST_TEST(std::abs(rows[r] - row / 5) < 1e-6);
  }
}

BOOST_AUTO_TEST_CASE(concat_grads_and_values) {
  for (int dim : {0, 1, -1}) {
    auto f = [dim](const Ins& in) { return one(ag::concat(in, dim)); };
    Shape s1 = {2, 3, 4}, s2 = s1;
    s2[dim < 0 ? 2 : dim] = 2;
    BOOST_TEST(grad_check(f, {param(s1, 1), param(s2, 2), param(s1, 3)}) < kTol);
  }
  // A tensor that needs no gradient among ones that do.
  auto g = [](const Ins& in) {
    return one(ag::concat(std::vector<Tensor>{in[0], Tensor::randn({2, 1}, 4, 4), in[0]}, 1));
  };
  BOOST_TEST(grad_check(g, {param({2, 2}, 5)}) < kTol);
  const Tensor a = Tensor::from_vector<float>({2, 2}, std::vector<float>{1, 2, 3, 4});
  const Tensor b = Tensor::from_vector<float>({2, 1}, std::vector<float>{9, 8});
  const std::vector<Tensor> parts = {a, b};
  const Tensor y = ops::concat(parts, 1);
  BOOST_TEST(y.shape() == Shape({2, 3}));
  BOOST_TEST(host(y) == (std::vector<float>{1, 2, 9, 3, 4, 8}));
}

BOOST_AUTO_TEST_CASE(log_softmax_and_token_log_probs) {
  auto f = [](const Ins& in) { return one(ag::log_softmax(in[0])); };
  BOOST_TEST(grad_check(f, {param({3, 4, 9}, 1)}) < kTol);
  const Tensor ids = Tensor::from_vector<int64_t>({2, 3}, std::vector<int64_t>{0, 8, 3, 3, 5, 1});
  auto g = [&](const Ins& in) { return one(ag::token_log_probs(in[0], ids)); };
  BOOST_TEST(grad_check(g, {param({2, 3, 9}, 2)}) < kTol);
  // The same as gathering log_softmax, and as minus the per-row cross entropy.
  const Tensor logits = Tensor::randn({2, 3, 9}, 4, 4, 2.0f);
  const auto full = host(ops::log_softmax(logits));
  const auto picked = host(ops::token_log_probs(logits, ids, nullptr));
  const auto id = ids.to_vector<int64_t>();
  const auto l = host(logits);
  for (int r = 0; r < 6; ++r) {
    double z = 0;
    for (int c = 0; c < 9; ++c) z += std::exp(double(l[r * 9 + c]));
    const double ref = l[r * 9 + id[r]] - std::log(z);
    BOOST_TEST(std::abs(picked[r] - ref) < 1e-5);
    BOOST_TEST(std::abs(full[r * 9 + id[r]] - ref) < 1e-5);
  }
  BOOST_TEST(ops::token_log_probs(logits, ids, nullptr).shape() == Shape({2, 3}));
}

namespace {
// Direct convolution in double: x (N, C, H, W), w (O, C, k, k).
std::vector<float> naive_conv(const Tensor& x, const Tensor& w, const Tensor& b, int stride,
                              int pad, int groups = 1) {
  const auto X = host(x), W = host(w);
  const int64_t N = x.dim(0), H = x.dim(2), Wd = x.dim(3), O = w.dim(0), K = w.dim(2);
  const int64_t C = w.dim(1), O_group = O / groups;  // C: one group's input channels
  const int64_t OH = (H + 2 * pad - K) / stride + 1, OW = (Wd + 2 * pad - K) / stride + 1;
  const auto B = b.defined() ? host(b) : std::vector<float>(O, 0.0f);
  std::vector<float> y(N * O * OH * OW);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double acc = B[o];
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < K; ++i)
              for (int64_t j = 0; j < K; ++j) {
                const int64_t ih = oh * stride - pad + i, iw = ow * stride - pad + j;
                if (ih < 0 || ih >= H || iw < 0 || iw >= Wd) continue;
                const int64_t xc = o / O_group * C + c;  // the input channel
                acc += double(X[((n * C * groups + xc) * H + ih) * Wd + iw]) *
                       W[((o * C + c) * K + i) * K + j];
              }
          y[((n * O + o) * OH + oh) * OW + ow] = float(acc);
        }
  return y;
}
}  // namespace

BOOST_AUTO_TEST_CASE(conv2d_grads_and_values) {
  for (auto [stride, pad] : {std::pair{1, 1}, std::pair{2, 0}, std::pair{2, 2}}) {
    auto f = [=](const Ins& in) { return one(ag::conv2d(in[0], in[1], in[2], stride, pad)); };
    BOOST_TEST(grad_check(f, {param({2, 3, 7, 6}, 1), param({4, 3, 3, 3}, 2), param({4}, 3)}) <
               kTol);
    const Tensor x = Tensor::randn({2, 3, 7, 6}, 5, 1), w = Tensor::randn({4, 3, 3, 3}, 5, 2),
                 b = Tensor::randn({4}, 5, 3);
    BOOST_TEST(testing::norm_error(host(ops::conv2d(x, w, b, stride, pad)),
                                   naive_conv(x, w, b, stride, pad)) < 1e-6);
  }
  auto no_bias = [](const Ins& in) { return one(ag::conv2d(in[0], in[1], Tensor(), 1, 0)); };
  BOOST_TEST(grad_check(no_bias, {param({1, 2, 5, 5}, 4), param({3, 2, 5, 5}, 5)}) < kTol);
}

// Grouped and depthwise convolutions: gradients and values against the
// direct convolution, and equal to G separate convolutions.
BOOST_AUTO_TEST_CASE(conv2d_groups) {
  for (auto [groups, out] : {std::pair{2, 4}, std::pair{4, 4}, std::pair{4, 8}}) {
    auto f = [=](const Ins& in) {
      return one(ag::conv2d(in[0], in[1], in[2], 1, 1, groups));
    };
    BOOST_TEST(grad_check(f, {param({2, 4, 6, 5}, 1), param({out, 4 / groups, 3, 3}, 2),
                              param({out}, 3)}) < kTol);
    const Tensor x = Tensor::randn({2, 4, 7, 6}, 7, 1), b = Tensor::randn({out}, 7, 3),
                 w = Tensor::randn({out, 4 / groups, 3, 3}, 7, 2);
    BOOST_TEST(testing::norm_error(host(ops::conv2d(x, w, b, 2, 1, groups)),
                                   naive_conv(x, w, b, 2, 1, groups)) < 1e-6);
  }
  const Tensor img = Tensor::randn({1, 6, 5, 5}, 1, 5);
  BOOST_TEST(error_mentions([&] { ops::conv2d(img, Tensor::randn({4, 3, 3, 3}, 1, 6), Tensor(), 1, 0, 4); },
                            {"conv2d", "4 groups", "[1, 6, 5, 5]"}));
  BOOST_TEST(error_mentions([&] { ops::conv2d(img, Tensor::randn({4, 2, 3, 3}, 1, 6), Tensor(), 1, 0, 2); },
                            {"conv2d", "C / groups", "[4, 2, 3, 3]"}));
}

namespace {
// GroupNorm / BatchNorm2d in double: statistics over each image's group of
// channels (per_image) or over the batch (groups = C).
std::vector<float> naive_channel_norm(const Tensor& x, int groups, bool per_image,
                                      const Tensor& weight, const Tensor& bias, float eps) {
  const auto X = host(x), Wt = host(weight), B = host(bias);
  const int64_t N = x.dim(0), C = x.dim(1), P = x.dim(2) * x.dim(3), Cg = C / groups;
  std::vector<float> y(X.size());
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t n0 = 0; n0 < (per_image ? N : 1); ++n0) {
      const int64_t n_first = per_image ? n0 : 0, n_last = per_image ? n0 + 1 : N;
      double sum = 0, squares = 0, count = 0;
      for (int64_t n = n_first; n < n_last; ++n)
        for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c)
          for (int64_t p = 0; p < P; ++p) {
            sum += X[(n * C + c) * P + p];
            count += 1;
          }
      const double mean = sum / count;
      for (int64_t n = n_first; n < n_last; ++n)
        for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c)
          for (int64_t p = 0; p < P; ++p) squares += std::pow(X[(n * C + c) * P + p] - mean, 2);
      const double rstd = 1 / std::sqrt(squares / count + eps);
      for (int64_t n = n_first; n < n_last; ++n)
        for (int64_t c = g * Cg; c < (g + 1) * Cg; ++c)
          for (int64_t p = 0; p < P; ++p) {
            const size_t at = size_t((n * C + c) * P + p);
            y[at] = float((X[at] - mean) * rstd * Wt[size_t(c)] + B[size_t(c)]);
          }
    }
  return y;
}
}  // namespace

BOOST_AUTO_TEST_CASE(group_norm_grads_and_values) {
  for (int groups : {1, 2, 6}) {
    auto f = [=](const Ins& in) { return one(ag::group_norm(in[0], groups, in[1], in[2])); };
    BOOST_TEST(grad_check(f, {param({3, 6, 4, 5}, 1), param({6}, 2), param({6}, 3)}) < kTol);
    const Tensor x = Tensor::randn({3, 6, 4, 5}, 8, 1), w = Tensor::randn({6}, 8, 2),
                 b = Tensor::randn({6}, 8, 3);
    BOOST_TEST(testing::norm_error(host(ops::group_norm(x, groups, w, b, 1e-5f, nullptr)),
                                   naive_channel_norm(x, groups, true, w, b, 1e-5f)) < 1e-6);
  }
  const Tensor x = Tensor::randn({2, 6, 3, 3}, 1, 1), w = Tensor::randn({6}, 1, 2);
  BOOST_TEST(error_mentions([&] { ops::group_norm(x, 4, w, w, 1e-5f, nullptr); },
                            {"group_norm", "4 groups", "6 channels"}));
  BOOST_TEST(error_mentions([&] { ops::group_norm(x, 2, Tensor::randn({4}, 1, 3), w, 1e-5f, nullptr); },
                            {"group_norm", "[4]", "(6)"}));
}

BOOST_AUTO_TEST_CASE(batch_norm2d_training_eval_and_running_statistics) {
  // Training: batch statistics (the gradient flows through them).
  auto train = [](const Ins& in) {
    return one(ag::batch_norm2d(in[0], in[1], in[2], nullptr, nullptr, true));
  };
  BOOST_TEST(grad_check(train, {param({4, 3, 3, 5}, 1), param({3}, 2), param({3}, 3)}) < kTol);
  const Tensor x = Tensor::randn({4, 3, 3, 5}, 9, 1, 2.0f), w = Tensor::randn({3}, 9, 2),
               b = Tensor::randn({3}, 9, 3);
  Tensor running_mean = Tensor::zeros({3}), running_var = Tensor::full({3}, 1.0f);
  const Tensor y = ag::batch_norm2d(x, w, b, &running_mean, &running_var, true, 0.1f, 1e-5f);
  BOOST_TEST(testing::norm_error(host(y), naive_channel_norm(x, 3, false, w, b, 1e-5f)) < 1e-6);
  // PyTorch's update: running = 0.9 running + 0.1 batch (variance unbiased).
  const auto X = host(x);
  for (int c = 0; c < 3; ++c) {
    double sum = 0, squares = 0;
    const int count = 4 * 15;
    for (int n = 0; n < 4; ++n)
      for (int p = 0; p < 15; ++p) sum += X[size_t((n * 3 + c) * 15 + p)];
    const double mean = sum / count;
    for (int n = 0; n < 4; ++n)
      for (int p = 0; p < 15; ++p) squares += std::pow(X[size_t((n * 3 + c) * 15 + p)] - mean, 2);
    BOOST_TEST(std::abs(host(running_mean)[size_t(c)] - 0.1 * mean) < 1e-5);
    BOOST_TEST(std::abs(host(running_var)[size_t(c)] - (0.9 + 0.1 * squares / (count - 1))) < 1e-5);
  }
  // Eval: the running statistics, fixed (the gradient is the affine map's).
  Tensor rm = Tensor::randn({3}, 9, 4), rv = Tensor::full({3}, 2.5f);
  const Tensor before = rm.clone();
  auto eval = [&](const Ins& in) {
    return one(ag::batch_norm2d(in[0], in[1], in[2], &rm, &rv, false));
  };
  BOOST_TEST(grad_check(eval, {param({2, 3, 2, 2}, 5), param({3}, 6), param({3}, 7)}) < kTol);
  BOOST_TEST(host(rm) == host(before));
  const auto ye = host(ops::batch_norm2d(x, w, b, &rm, &rv, false, 0.1f, 1e-5f, nullptr));
  const auto M = host(rm), Wt = host(w), B = host(b);
  double err = 0;
  for (int n = 0; n < 4; ++n)
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 15; ++p) {
        const size_t at = size_t((n * 3 + c) * 15 + p);
        const double want = (X[at] - M[size_t(c)]) / std::sqrt(2.5 + 1e-5) * Wt[size_t(c)] + B[size_t(c)];
        err = std::max(err, std::abs(ye[at] - want));
      }
  BOOST_TEST(err < 1e-5);
  BOOST_TEST(error_mentions([&] {
    Tensor m1 = Tensor::zeros({3}), v1 = Tensor::full({3}, 1.0f);
    ops::batch_norm2d(Tensor::randn({1, 3, 1, 1}, 1, 1), w, b, &m1, &v1, true, 0.1f, 1e-5f, nullptr);
  }, {"batch_norm2d", "more than one value"}));
}

BOOST_AUTO_TEST_CASE(flatten_grad) {
  auto f = [](const Ins& in) { return one(ag::flatten(in[0])); };
  BOOST_TEST(grad_check(f, {param({2, 3, 2, 2}, 1)}) < kTol);
  BOOST_TEST(ag::flatten(Tensor::zeros({5, 2, 3, 4})).shape() == Shape({5, 24}));
}

// Images large enough that im2col runs in several chunks: the result and the
// gradients equal those of one image at a time.
BOOST_AUTO_TEST_CASE(conv2d_chunks_equal_single_images) {
  const int64_t N = 3, C = 32, H = 130, W = 130;  // 288 x 128^2 floats per image
  const Tensor x = Tensor::randn({N, C, H, W}, 6, 1), w = Tensor::randn({2, C, 3, 3}, 6, 2),
               b = Tensor::randn({2}, 6, 3);
  const Tensor y = ops::conv2d(x, w, b, 1, 0);
  const Tensor dy = Tensor::randn(y.shape(), 6, 4);
  Tensor dx, dw, db;
  ops::conv2d_backward(x, w, dy, 1, 0, &dx, &dw, &db);
  Tensor dw_sum, db_sum;
  for (int64_t n = 0; n < N; ++n) {
    const Tensor xn = x.narrow(0, n, 1).contiguous(), dyn = dy.narrow(0, n, 1).contiguous();
    BOOST_TEST(testing::norm_error(host(ops::conv2d(xn, w, b, 1, 0)),
                                   host(y.narrow(0, n, 1).contiguous())) < 1e-6);
    Tensor dxn;
    ops::conv2d_backward(xn, w, dyn, 1, 0, &dxn, &dw_sum, &db_sum);
    BOOST_TEST(testing::norm_error(host(dxn), host(dx.narrow(0, n, 1).contiguous())) < 1e-6);
  }
  BOOST_TEST(testing::norm_error(host(dw), host(dw_sum)) < 1e-6);
  BOOST_TEST(testing::norm_error(host(db), host(db_sum)) < 1e-6);
}

BOOST_AUTO_TEST_CASE(pooling_grads_and_values) {
  for (auto [kernel, stride, pad] :
       {std::tuple{2, 2, 0}, std::tuple{3, 2, 1}, std::tuple{3, 1, 1}}) {
    auto fmax = [=](const Ins& in) { return one(ag::max_pool2d(in[0], kernel, stride, pad)); };
    BOOST_TEST(grad_check(fmax, {distinct_values({2, 3, 7, 8}, 1)}, 1e-2f, 200) < kTol);
    auto favg = [=](const Ins& in) { return one(ag::avg_pool2d(in[0], kernel, stride, pad)); };
    BOOST_TEST(grad_check(favg, {param({2, 3, 7, 8}, 2)}) < kTol);
  }
  // 4x4 -> 2x2 by hand; avg with padding divides by the full window.
  const Tensor x = Tensor::from_vector<float>(
      {1, 1, 4, 4}, std::vector<float>{1, 2, 5, 3, 4, 0, 1, 1, 9, 8, 2, 2, 7, 6, 2, 4});
  Tensor argmax;
  BOOST_TEST(host(ops::max_pool2d(x, 2, 2, 0, &argmax)) == (std::vector<float>{4, 5, 9, 4}));
  BOOST_TEST(argmax.to_vector<int32_t>() == (std::vector<int32_t>{4, 2, 8, 15}));
  BOOST_TEST(host(ops::avg_pool2d(x, 2, 2, 0)) == (std::vector<float>{1.75f, 2.5f, 7.5f, 2.5f}));
  BOOST_TEST(ops::avg_pool2d(x, 3, 2, 1).to_vector<float>()[0] == (1 + 2 + 4 + 0) / 9.0f);
}

BOOST_AUTO_TEST_CASE(new_ops_bad_inputs_name_op_and_shapes) {
  const Tensor a = Tensor::randn({2, 3, 4}, 1, 1), b = Tensor::randn({3, 5}, 1, 2);
  BOOST_TEST(error_mentions([&] { ops::mul(a, b); }, {"mul", "[2, 3, 4]", "[3, 5]"}));
  BOOST_TEST(error_mentions(
      [&] {
        ops::minimum(a, Tensor::randn({2, 1, 4}, 1, 3));
      },
      {"minimum", "[2, 1, 4]"}));
  const std::vector<Tensor> parts = {a, b};
  BOOST_TEST(error_mentions([&] { ops::concat(parts, 0); }, {"concat", "[2, 3, 4]", "[3, 5]"}));
  BOOST_TEST(error_mentions([&] { ops::concat(std::vector<Tensor>{a}, 3); }, {"concat", "dim 3"}));
  const Tensor ids = Tensor::from_vector<int64_t>({2}, std::vector<int64_t>{1, 9});
  BOOST_TEST(error_mentions(
      [&] {
        ops::token_log_probs(b.view({3, 5}), ids, nullptr);
      },
      {"token_log_probs", "[2]", "[3, 5]"}));
  BOOST_TEST(error_mentions(
      [&] {
        ops::token_log_probs(Tensor::randn({2, 5}, 1, 4), ids, nullptr);
      },
      {"token_log_probs", "9", "[0, 5)"}));
  const Tensor img = Tensor::randn({1, 3, 8, 8}, 1, 5);
  BOOST_TEST(error_mentions(
      [&] {
        ops::conv2d(img, Tensor::randn({4, 2, 3, 3}, 1, 6), Tensor(), 1, 0);
      },
      {"conv2d", "[4, 2, 3, 3]", "[1, 3, 8, 8]"}));
  BOOST_TEST(error_mentions(
      [&] {
        ops::conv2d(img, Tensor::randn({4, 3, 9, 9}, 1, 7), Tensor(), 1, 0);
      },
      {"conv2d", "9x9", "[1, 3, 8, 8]"}));
  BOOST_TEST(
      error_mentions([&] { ops::max_pool2d(img, 2, 2, 2, nullptr); }, {"max_pool2d", "padding 2"}));
  BOOST_TEST(error_mentions([&] { ops::avg_pool2d(a, 2, 2, 0); }, {"avg_pool2d", "[2, 3, 4]"}));
  BOOST_TEST(error_mentions([&] { ops::clamp(a, 1.0f, -1.0f); }, {"clamp", "1", "-1"}));
}

// ---- backward over the loss's subgraph (PPO: actor and critic in one forward) -------

namespace {
struct TwoLosses {
  Tensor actor, critic;
};
// An actor loss and a critic loss over one input, their nodes interleaved on
// the tape, sharing the leaf `shared` (summed gradients) but no non-leaf.
TwoLosses record_two_losses(const Tensor& x, const Tensor& shared, const Tensor& w_actor,
                            const Tensor& w_critic, bool actor, bool critic) {
  TwoLosses out;
  Tensor ha, hc;
  if (actor) ha = ag::linear(x, w_actor, shared);
  if (critic) hc = ag::linear(x, w_critic, shared);
  if (actor) ha = ag::exp(ag::clamp(ha, -2.0f, 2.0f));
  if (critic) hc = ag::relu(hc);
  if (actor) out.actor = ag::mean(ag::mul(ha, ha));
  if (critic) out.critic = ag::sum(ag::mul(hc, hc));
  return out;
}
}  // namespace

BOOST_AUTO_TEST_CASE(backward_runs_only_the_losses_subgraph) {
  autograd::clear_tape();
  const Tensor x = Tensor::randn({6, 5}, 2, 1);
  const Tensor shared = param({4}, 2), w_actor = param({4, 5}, 3), w_critic = param({4, 5}, 4);
  // References: each loss recorded and back-propagated alone.
  autograd::backward(record_two_losses(x, shared, w_actor, w_critic, true, false).actor);
  const auto actor_alone = host(w_actor.grad()), shared_actor = host(shared.grad());
  shared.set_grad(Tensor());
  autograd::backward(record_two_losses(x, shared, w_actor, w_critic, false, true).critic);
  const auto critic_alone = host(w_critic.grad()), shared_critic = host(shared.grad());
  BOOST_TEST(autograd::tape_size() == 0u);
  shared.set_grad(Tensor());
  w_actor.set_grad(Tensor());
  w_critic.set_grad(Tensor());

  const TwoLosses both = record_two_losses(x, shared, w_actor, w_critic, true, true);
  BOOST_TEST(autograd::tape_size() == 9u);
  autograd::backward(both.actor);
  BOOST_TEST(autograd::tape_size() == 4u);  // the critic's nodes wait
  BOOST_TEST(!w_critic.grad().defined());   // untouched by the actor's backward
  BOOST_TEST(host(w_actor.grad()) == actor_alone);
  BOOST_TEST(host(shared.grad()) == shared_actor);
  autograd::backward(both.critic);
  BOOST_TEST(autograd::tape_size() == 0u);
  BOOST_TEST(host(w_critic.grad()) == critic_alone);
  BOOST_TEST(host(w_actor.grad()) == actor_alone);  // not touched again
  // The shared leaf holds the sum of both losses' gradients.
  const auto summed = host(shared.grad());
  for (size_t i = 0; i < summed.size(); ++i)
    BOOST_TEST(std::abs(summed[i] - (shared_actor[i] + shared_critic[i])) <=
               1e-6f * (1 + std::abs(summed[i])));
}

// A non-leaf used by two losses: its nodes run with the first backward, so
// the second is refused rather than silently losing that part's gradient.
BOOST_AUTO_TEST_CASE(backward_refuses_a_graph_part_already_released) {
  autograd::clear_tape();
  const Tensor w = param({3, 4}, 1);
  const Tensor h = ag::gelu(ag::linear(Tensor::randn({2, 4}, 1, 2), w, Tensor()));
  const Tensor l1 = ag::sum(h), l2 = ag::mean(h);
  autograd::backward(l1);
  BOOST_TEST(autograd::tape_size() == 1u);
  BOOST_TEST(error_mentions([&] { autograd::backward(l2); }, {"backward", "already", "add"}));
  BOOST_TEST(error_mentions([&] { autograd::backward(l1); }, {"backward", "already"}));
  autograd::clear_tape();
  // Nodes no loss reached stay until clear_tape (an unused head, say).
  const Tensor used = ag::sum(ag::relu(ag::linear(Tensor::randn({2, 4}, 1, 3), w, Tensor())));
  ag::exp(w);
  autograd::backward(used);
  BOOST_TEST(autograd::tape_size() == 1u);
  autograd::clear_tape();
  BOOST_TEST(autograd::tape_size() == 0u);
}
