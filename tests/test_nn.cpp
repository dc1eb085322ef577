// The module interface: trainable flags and frozen parameters, deep and
// frozen copies that share no weights, linear layers wrapped by LoRA, and
// the logits of chosen positions only.
#define BOOST_TEST_MODULE nn
#include <boost/test/unit_test.hpp>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "grad_check.hpp"
#include "infer/generate.hpp"
#include "nn/bloom.hpp"
#include "nn/compact.hpp"
#include "nn/lora.hpp"
#include "ops/ops.hpp"
#include "test_util.hpp"

using namespace turbine;

namespace {

nn::BloomConfig tiny() {
  return nn::BloomConfig{48, 16, 2, 2};
}

const Tensor kIds = Tensor::from_vector<int64_t>({2, 5}, {1, 5, 9, 3, 7, 2, 4, 6, 8, 10});
const Tensor kTargets = Tensor::from_vector<int64_t>({2, 5}, {5, 9, 3, 7, 1, 4, 6, 8, 10, 2});

float max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector<float>(), y = b.to_vector<float>();
  BOOST_REQUIRE(x.size() == y.size());
  float worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

size_t count_trainable(const nn::ParameterList& params) {
  return nn::trainable(params).size();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(modules)

BOOST_AUTO_TEST_CASE(deep_copy_shares_no_weights) {
  nn::Bloom model(tiny(), 1);
  const nn::Bloom copy = model.deep_copy();
  const Tensor before = copy.logits(kIds);
  BOOST_TEST(max_abs_diff(before, model.logits(kIds)) == 0.0f);
  // Changing the original leaves the copy alone.
  model.parameters()[0].tensor.fill(0.5f);
  model.parameter("h.1.mlp.dense_4h_to_h.weight").fill(0.25f);
  BOOST_TEST(max_abs_diff(before, copy.logits(kIds)) == 0.0f);
  BOOST_TEST(max_abs_diff(before, model.logits(kIds)) > 0.0f);
  BOOST_TEST(copy.parameters().size() == model.parameters().size());
  for (size_t i = 0; i < copy.parameters().size(); ++i)
    BOOST_TEST(!copy.parameters()[i].tensor.same_as(model.parameters()[i].tensor));
}

BOOST_AUTO_TEST_CASE(frozen_copy_gets_no_gradients) {
  nn::Bloom model(tiny(), 2);
  const nn::Bloom reference = model.frozen_copy();
  BOOST_TEST(count_trainable(reference.parameters()) == 0u);
  BOOST_TEST(count_trainable(model.parameters()) == model.parameters().size());
  // Both in one graph (as PPO's KL term): only the trained model's
  // parameters receive gradients.
  const Tensor loss = ag::add(model.loss(kIds, kTargets), reference.loss(kIds, kTargets));
  autograd::backward(loss);
  for (const nn::Parameter& p : reference.parameters()) BOOST_TEST(!p.tensor.grad().defined());
  for (const nn::Parameter& p : model.parameters()) BOOST_TEST(p.tensor.grad().defined());
}

BOOST_AUTO_TEST_CASE(set_trainable_by_name) {
  nn::Bloom model(tiny(), 3);
  model.set_trainable(false, [](const std::string& name) { return name.starts_with("h.0."); });
  for (const nn::Parameter& p : model.parameters()) {
    BOOST_TEST(p.trainable == !p.name.starts_with("h.0."), p.name);
    BOOST_TEST(p.tensor.requires_grad() == p.trainable, p.name);
  }
}

BOOST_AUTO_TEST_CASE(lora_starts_as_the_base_and_trains_only_its_adapters) {
  nn::Bloom model(tiny(), 4);
  const Tensor base_logits = model.logits(kIds);
  const int64_t wrapped = nn::apply_lora(model, {4, 2.0f, "self_attention.", 9});
  BOOST_TEST(wrapped == 4);  // query_key_value and dense in each of 2 blocks
  // B starts at zero: the same function as the base.
  BOOST_TEST(max_abs_diff(base_logits, model.logits(kIds)) == 0.0f);
  // The base weights keep their names (base checkpoints load); the adapters
  // are the only trainable parameters.
  const nn::ParameterList trainable = nn::trainable(model.parameters());
  BOOST_TEST(trainable.size() == 8u);
  for (const nn::Parameter& p : trainable)
    BOOST_TEST((p.name.ends_with("lora_A.weight") || p.name.ends_with("lora_B.weight")), p.name);
  BOOST_TEST(model.parameter("h.1.self_attention.dense.weight").defined());
  autograd::backward(model.loss(kIds, kTargets));
  for (const nn::Parameter& p : model.parameters())
    BOOST_TEST(p.tensor.grad().defined() == p.trainable, p.name);
  // B gets a gradient at zero; A's is zero until B moves (dL/dA = s B^T ...).
  BOOST_TEST(std::sqrt(ops::sum_squares(
                 model.parameter("h.0.self_attention.dense.lora_B.weight").grad())) > 0.0);
  // Moving B changes the function by exactly scaling * x A^T B^T.
  model.parameter("h.0.self_attention.query_key_value.lora_B.weight").fill(0.01f);
  BOOST_TEST(max_abs_diff(base_logits, model.logits(kIds)) > 1e-4f);
  // A deep copy of a LoRA model copies the adapters too.
  const nn::Bloom copy = model.deep_copy();
  BOOST_TEST(max_abs_diff(copy.logits(kIds), model.logits(kIds)) == 0.0f);
  BOOST_TEST(count_trainable(copy.parameters()) == 8u);
}

BOOST_AUTO_TEST_CASE(logits_at_chosen_positions) {
  autograd::NoGradGuard no_grad;
  nn::Bloom model(tiny(), 5);
  const auto full = model.logits(kIds).to_vector<float>();  // (2, 5, 48)
  const auto picked =
      model.logits_at(kIds, Tensor::from_vector<int64_t>({2}, {-1, 2})).to_vector<float>();
  BOOST_REQUIRE(picked.size() == 2u * 48u);
  for (int v = 0; v < 48; ++v) {
    BOOST_TEST(picked[v] == full[(0 * 5 + 4) * 48 + v], boost::test_tools::tolerance(1e-5f));
    BOOST_TEST(picked[48 + v] == full[(1 * 5 + 2) * 48 + v], boost::test_tools::tolerance(1e-5f));
  }
  const std::string e = testing::error_of([&] {
    model.logits_at(kIds, Tensor::from_vector<int64_t>({2}, {0, 5}));
  });
  BOOST_TEST(testing::contains(e, "position 5 is outside [0, 5)"), e);
}

BOOST_AUTO_TEST_SUITE_END()

// Compact (bf16, f16, int8) weights for inference: a layer computes what
// Linear computes on the f32 weight it stands for, and int8 stays within the
// rounding of its scales; a model's logits barely move, and its weights
// shrink to a half or about a quarter.
BOOST_AUTO_TEST_SUITE(compact_weights)

BOOST_AUTO_TEST_CASE(layer_equals_linear_on_its_own_weight_and_bounds_int8_rounding) {
  nn::Linear plain;
  plain.weight = Tensor::randn({37, 64}, 7, 1, 0.1f);
  plain.bias = Tensor::randn({37}, 7, 2, 0.1f);
  struct Kind {
    DType type;
    int group;
  };
  for (const Kind& kind :
       {Kind{DType::bf16, 0}, Kind{DType::f16, 0}, Kind{DType::i8, 0}, Kind{DType::i8, 16}}) {
    const nn::CompactLinear layer(plain, kind.type, kind.group);
    const Tensor expanded = ops::expand_weight(layer.weight);
    for (int64_t rows : {1, 3, 9}) {  // the widen-in-registers and the panel paths
      const Tensor x = Tensor::randn({rows, 64}, 8, uint64_t(rows));
      const Tensor y = layer.forward(x);
      BOOST_TEST(max_abs_diff(y, ops::linear(x, expanded, plain.bias)) <= 1e-5f,
                 dtype_name(kind.type) << " group " << kind.group << " rows " << rows);
      if (kind.type != DType::i8) continue;
      // |w - q s| <= s / 2 per weight, so |dy| <= sum_k |x_k| s / 2.
      const auto xs = x.to_vector<float>();
      const auto scales = layer.weight.scales.to_vector<float>();
      const auto exact = ops::linear(x, plain.weight, plain.bias).to_vector<float>();
      const auto got = y.to_vector<float>();
      const int group = layer.weight.group, groups = int(64 / group);
      for (int64_t r = 0; r < rows; ++r)
        for (int n = 0; n < 37; ++n) {
          double bound = 1e-5;
          for (int k = 0; k < 64; ++k)
            bound += std::abs(xs[size_t(r * 64 + k)]) * scales[size_t(n * groups + k / group)] / 2;
          BOOST_TEST_REQUIRE(std::abs(got[size_t(r * 37 + n)] - exact[size_t(r * 37 + n)]) <=
                             bound);
        }
    }
  }
}

BOOST_AUTO_TEST_CASE(compacted_model_keeps_its_logits_and_shrinks) {
  nn::Bloom model(tiny(), 6);
  const Tensor reference = model.logits(kIds);
  const auto ref = reference.to_vector<float>();
  float scale = 0;
  for (float v : ref) scale = std::max(scale, std::abs(v));
  struct Kind {
    DType type;
    int group;
    float max_relative;  // of the largest logit
    double size_ratio;
  };
  // 16-bit storage rounds each weight by up to 2^-9 (bf16) or 2^-12 (f16)
  // relative; int8 by up to half a scale, 1/254 of its group's largest
  // weight. Measured: 1.6e-5, 3.1e-6 and 3.3e-5 of the largest logit; the
  // bounds leave about 6x.
  for (const Kind& kind : {Kind{DType::bf16, 0, 1e-4f, 0.5}, Kind{DType::f16, 0, 2e-5f, 0.5},
                           Kind{DType::i8, 8, 2e-4f, 0.25 + 1.0 / 8}}) {
    nn::Bloom copy = model.deep_copy();
    const int64_t parameters_before = int64_t(copy.parameters().size());
    const nn::CompactReport report = nn::compact_linears(copy, kind.type, kind.group);
    BOOST_TEST(report.layers == 8);  // 2 blocks x 4
    BOOST_TEST(double(report.bytes_after) == kind.size_ratio * double(report.bytes_before));
    BOOST_TEST(int64_t(copy.parameters().size()) == parameters_before - 8);  // weights gone
    const autograd::NoGradGuard inference;
    const float diff = max_abs_diff(copy.logits(kIds), reference);
    BOOST_TEST_MESSAGE(dtype_name(kind.type)
                       << ": largest logit change " << diff / scale << " of the largest logit");
    BOOST_TEST(diff <= kind.max_relative * scale, dtype_name(kind.type));
  }
}

BOOST_AUTO_TEST_CASE(a_gradient_through_a_compact_layer_is_refused) {
  nn::Linear plain;
  plain.weight = Tensor::randn({4, 8}, 9, 1);
  const nn::CompactLinear layer(plain, DType::bf16, 0);
  Tensor x = Tensor::randn({2, 8}, 9, 2);
  x.set_requires_grad(true);
  BOOST_CHECK_THROW(layer.forward(x), std::exception);
  const autograd::NoGradGuard inference;
  BOOST_TEST(layer.forward(x).dim(1) == 4);
}

BOOST_AUTO_TEST_CASE(bad_compact_requests_are_clear_errors) {
  nn::Linear plain;
  plain.weight = Tensor::randn({4, 12}, 9, 3);
  BOOST_CHECK_THROW(nn::CompactLinear(plain, DType::i8, 5),
                    std::exception);  // 5 does not divide 12
  BOOST_CHECK_THROW(nn::CompactLinear(plain, DType::i32, 0), std::exception);  // not a weight type
}

BOOST_AUTO_TEST_SUITE_END()

// Incremental decoding with a KV cache against recomputing the whole
// context: every step's logits, and the greedy tokens they pick, for one
// sequence and for a ragged, left-padded batch.
BOOST_AUTO_TEST_SUITE(kv_cache)

namespace {

nn::BloomConfig decoding_model() {
  nn::BloomConfig c{64, 32, 4, 3};
  c.initializer_range = 0.3f;  // logits well away from zero and from ties
  return c;
}

// The last position's logits of `tokens`, recomputed from scratch.
std::vector<float> recompute(const nn::Bloom& model, const std::vector<int64_t>& tokens) {
  const Tensor ids = Tensor::from_vector<int64_t>({1, int64_t(tokens.size())}, tokens);
  return model.logits_at(ids, Tensor::from_vector<int64_t>({1}, {-1})).to_vector<float>();
}

int64_t argmax(const std::vector<float>& row) {
  return int64_t(std::max_element(row.begin(), row.end()) - row.begin());
}

}  // namespace

BOOST_AUTO_TEST_CASE(one_sequence_decodes_as_a_full_recompute) {
  const nn::Bloom model(decoding_model(), 11);
  std::vector<int64_t> tokens = {5, 17, 3, 42, 8, 8, 61};
  nn::KvCache cache(model.config(), 1, 32, model.device());
  Tensor logits = model.decode(Tensor::from_vector<int64_t>({1, 7}, tokens), cache);
  for (int step = 0; step < 12; ++step) {
    const auto got = logits.to_vector<float>(), want = recompute(model, tokens);
    BOOST_TEST(testing::norm_error(got, want) < 1e-5, "step " << step);
    BOOST_TEST(argmax(got) == argmax(want), "step " << step);
    tokens.push_back(argmax(got));
    logits = model.decode(Tensor::from_vector<int64_t>({1, 1}, {tokens.back()}), cache);
  }
  BOOST_TEST(cache.length() == 7 + 12);
}

BOOST_AUTO_TEST_CASE(a_ragged_left_padded_batch_decodes_each_row_as_alone) {
  const nn::Bloom model(decoding_model(), 12);
  std::vector<std::vector<int64_t>> rows = {
      {9, 2, 33}, {1, 2, 3, 4, 5, 6, 7}, {60, 0, 13, 13, 40}, {22}};
  const int64_t batch = 4, width = 7;
  std::vector<int64_t> padded;
  std::vector<uint8_t> valid;
  for (const auto& row : rows)
    for (int64_t t = 0; t < width; ++t) {
      const int64_t pad = width - int64_t(row.size());
      padded.push_back(t < pad ? 0 : row[size_t(t - pad)]);
      valid.push_back(t < pad ? 0 : 1);
    }
  nn::KvCache cache(model.config(), batch, 24, model.device());
  Tensor logits = model.decode(Tensor::from_vector<int64_t>({batch, width}, padded), cache, valid);
  for (int step = 0; step < 8; ++step) {
    const auto all = logits.to_vector<float>();
    std::vector<int64_t> next;
    for (int64_t b = 0; b < batch; ++b) {
      const std::vector<float> got(all.begin() + b * 64, all.begin() + (b + 1) * 64);
      const auto want = recompute(model, rows[size_t(b)]);
      BOOST_TEST(testing::norm_error(got, want) < 1e-5, "row " << b << " step " << step);
      BOOST_TEST(argmax(got) == argmax(want), "row " << b << " step " << step);
      rows[size_t(b)].push_back(argmax(got));
      next.push_back(argmax(got));
    }
    logits = model.decode(Tensor::from_vector<int64_t>({batch, 1}, next), cache);
  }
}

BOOST_AUTO_TEST_CASE(greedy_generation_equals_recomputing_its_window) {
  // Within the context window and past it (context 12 < 5 + 16 tokens: the
  // window of the last 12 is recomputed once the text outgrows it).
  const nn::Bloom model(decoding_model(), 14);
  for (int64_t context : {64, 12}) {
    infer::SamplingOptions o;
    o.max_new_tokens = 16;
    o.temperature = 0;
    o.context = context;
    const std::vector<int32_t> prompt = {3, 1, 4, 1, 5};
    const std::vector<int32_t> got = infer::generate(model, prompt, o);
    std::vector<int64_t> want(prompt.begin(), prompt.end());
    for (int n = 0; n < 16; ++n) {
      const std::vector<int64_t> window(
          want.end() - std::min<int64_t>(int64_t(want.size()), context), want.end());
      want.push_back(argmax(recompute(model, window)));
    }
    BOOST_TEST(std::vector<int64_t>(got.begin(), got.end()) == want, "context " << context);
  }
}

BOOST_AUTO_TEST_CASE(a_compact_lm_head_keeps_the_decoded_logits) {
  // The tied LM head in bf16 / int8 (group 8) for decode only: logits within
  // the storage's rounding of the f32 head's (measured 1.6e-3 and 4.2e-3
  // normalized; bounds about 2.5x), the same greedy token, and logits()
  // untouched.
  struct Kind {
    DType type;
    double bound;
    int64_t bytes;  // 64 x 32 weights
  };
  for (const Kind& kind :
       {Kind{DType::bf16, 4e-3, 64 * 32 * 2}, Kind{DType::i8, 1.2e-2, 64 * 32 + 64 * 4 * 4}}) {
    nn::Bloom model(decoding_model(), 15);
    const Tensor ids = Tensor::from_vector<int64_t>({1, 6}, {4, 8, 15, 16, 23, 42});
    nn::KvCache cache(model.config(), 1, 8, model.device());
    const auto f32 = model.decode(ids, cache).to_vector<float>();
    const Tensor full_before = model.logits(ids);
    BOOST_TEST(model.compact_lm_head(kind.type, 8) == kind.bytes);
    cache.clear();
    const auto compact = model.decode(ids, cache).to_vector<float>();
    BOOST_TEST_MESSAGE(dtype_name(kind.type) << " head: " << testing::norm_error(compact, f32));
    BOOST_TEST(testing::norm_error(compact, f32) < kind.bound, dtype_name(kind.type));
    BOOST_TEST(argmax(compact) == argmax(f32));
    BOOST_TEST(max_abs_diff(model.logits(ids), full_before) == 0.0f);
    // Dropping the f32 table: lookups widen the compact rows. The logits are
    // exactly those of an f32 model whose table holds the widened values
    // (with the same compact head); the parameter list loses the matrix, and
    // the full-vocabulary forwards refuse.
    nn::Bloom widened = model.deep_copy();
    Tensor(widened.parameter("word_embeddings.weight"))
        .copy_from(ops::expand_weight(
            ops::compact_weight(model.parameter("word_embeddings.weight"), kind.type, 8)));
    widened.compact_lm_head(kind.type, 8);
    const int64_t listed = int64_t(model.parameters().size());
    model.drop_f32_embedding();
    BOOST_TEST(!model.has_f32_embedding());
    BOOST_TEST(int64_t(model.parameters().size()) == listed - 1);
    cache.clear();
    const auto dropped = model.decode(ids, cache).to_vector<float>();
    cache.clear();
    BOOST_TEST(dropped == widened.decode(ids, cache).to_vector<float>());
    BOOST_TEST(argmax(dropped) == argmax(f32));
    BOOST_TEST(testing::contains(testing::error_of([&] { model.logits(ids); }), "was dropped"));
  }
}

BOOST_AUTO_TEST_CASE(a_full_cache_is_a_clear_error) {
  const nn::Bloom model(decoding_model(), 13);
  nn::KvCache cache(model.config(), 1, 4, model.device());
  model.decode(Tensor::from_vector<int64_t>({1, 3}, {1, 2, 3}), cache);
  model.decode(Tensor::from_vector<int64_t>({1, 1}, {4}), cache);
  BOOST_CHECK_THROW(model.decode(Tensor::from_vector<int64_t>({1, 1}, {5}), cache), std::exception);
  cache.clear();
  BOOST_TEST(cache.length() == 0);
  BOOST_TEST(model.decode(Tensor::from_vector<int64_t>({1, 2}, {1, 2}), cache).dim(1) == 64);
}

// Multi-modal input: embeddings with images among them (VisualChat).

BOOST_AUTO_TEST_CASE(embeddings_in_equal_ids_in) {
  const nn::Bloom model(tiny(), 7);
  const Tensor from_ids = model.hidden_states(kIds);
  const Tensor from_embeddings = model.hidden_states_from(model.token_embeddings(kIds), nullptr);
  BOOST_TEST(from_ids.to_vector<float>() == from_embeddings.to_vector<float>(),
             boost::test_tools::per_element());
  BOOST_TEST(model.loss(kIds, kTargets).item() ==
             model.loss_from_hidden(from_embeddings, kTargets).item());
}

BOOST_AUTO_TEST_CASE(multimodal_decoding_in_chunks_equals_a_full_recompute) {
  // Row 0 is left-padded; an image of each row is split across two chunks;
  // text follows two images. MMCA and causal attention each decode as they
  // recompute.
  const nn::Bloom model(decoding_model(), 14);
  const int64_t B = 2, T = 15, H = model.config().hidden_size;
  const std::vector<int32_t> kinds = {-1, -1, 0, 0, 1, 1, 1, 1, 0, 2, 2, 2, 2, 0, 0,  //
                                      0,  1,  1, 1, 1, 1, 0, 0, 2, 2, 2, 2, 0, 0, 0};
  const Tensor embeddings = Tensor::randn({B, T, H}, 3, 1, 0.5f);
  const autograd::NoGradGuard inference;
  for (const bool mmca : {true, false}) {
    const ops::MmcaMasks masks = ops::mmca_masks(kinds, B, T, T, model.device());
    std::vector<int32_t> causal_kinds = kinds;  // causal recompute: no padding to hide
    if (!mmca) std::fill_n(causal_kinds.begin(), 2, ops::kTextToken);
    const Tensor full = model.hidden_states_from(embeddings, mmca ? &masks : nullptr);
    nn::KvCache cache(model.config(), B, T, model.device());
    cache.set_mmca(mmca);
    int64_t start = 0;
    for (const int64_t end : {6, 9, 10, 11, 12, 13, 14, 15}) {
      std::vector<int32_t> chunk_kinds;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = start; t < end; ++t)
          chunk_kinds.push_back((mmca ? kinds : causal_kinds)[size_t(b * T + t)]);
      const Tensor got = model.decode_from(embeddings.narrow(1, start, end - start).contiguous(),
                                           cache, chunk_kinds);
      const Tensor want = model.lm_head(full.narrow(1, end - 1, 1).contiguous().view({B, H}));
      BOOST_TEST(testing::norm_error(got.to_vector<float>(), want.to_vector<float>()) < 1e-5,
                 (mmca ? "mmca" : "causal") << " positions " << start << ".." << end);
      start = end;
    }
  }
  // MMCA changes what text after an image sees.
  const ops::MmcaMasks masks = ops::mmca_masks(kinds, B, T, T, model.device());
  const Tensor with = model.hidden_states_from(embeddings, &masks);
  const Tensor without = model.hidden_states_from(embeddings, nullptr);
  BOOST_TEST(testing::normalized_error(with.narrow(1, T - 1, 1).contiguous(),
                                       without.narrow(1, T - 1, 1).contiguous()) > 1e-3);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- 16-bit activations ---------------------------------------------------------------
// The training forward with bf16 or f16 activations (what the GPU's 16-bit
// math modes keep): the same loss and gradients as f32 up to 16-bit
// rounding, with dropout, random-LTD and activation checkpointing on; the
// parameters' gradients stay f32.

BOOST_AUTO_TEST_SUITE(activations16)

namespace {
struct Run {
  float loss = 0;
  std::vector<std::vector<float>> grads;
};

// One step's loss and parameter gradients, back-propagated from loss *
// loss_scale (f16's loss scaling: it keeps the small gradients of the
// logits out of f16's subnormal range) and divided by it.
Run train_step(nn::Bloom& model, const Tensor& ids, const Tensor& targets,
               float loss_scale = 1.0f) {
  for (nn::Parameter& p : model.parameters()) p.tensor.set_grad(Tensor());
  const Tensor loss = model.loss(ids, targets);
  autograd::backward(ag::scale(loss, loss_scale));
  Run run{loss.item(), {}};
  for (const nn::Parameter& p : model.parameters()) {
    BOOST_TEST_REQUIRE(p.tensor.grad().defined());
    BOOST_TEST((p.tensor.grad().dtype() == DType::f32));
    std::vector<float> g = p.tensor.grad().to_vector<float>();
    for (float& v : g) v /= loss_scale;
    run.grads.push_back(std::move(g));
  }
  return run;
}

// ||a - b|| / ||b||
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}
}  // namespace

BOOST_AUTO_TEST_CASE(bf16_and_f16_activations_train_like_f32) {
  nn::BloomConfig config{64, 32, 4, 3};
  config.hidden_dropout = 0.1f;
  nn::Bloom model(config, 11);
  std::vector<int64_t> ids(2 * 24), targets(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = int64_t((i * 37 + 5) % 64);
    targets[i] = int64_t((i * 11 + 3) % 64);
  }
  const Tensor tids = Tensor::from_vector<int64_t>({2, 24}, ids);
  const Tensor ttargets = Tensor::from_vector<int64_t>({2, 24}, targets);
  model.set_token_dropping({{1}, 16, 99, 0});
  model.set_activation_checkpointing({true, 2, false});
  const Run f32 = train_step(model, tids, ttargets);
  // Relative gradient error: 16-bit rounding of every activation along a
  // 3-layer graph, ~2^-8 per rounding for bf16 and 2^-11 for f16; f16
  // without loss scaling loses the logits' smallest gradients to its
  // subnormals (1e-2 here).
  struct Mode {
    DType dtype;
    float loss_scale;
    double tolerance;
  };
  for (const Mode& mode : {Mode{DType::bf16, 1.0f, 0.03}, Mode{DType::f16, 1024.0f, 0.005}}) {
    const DType dtype = mode.dtype;
    BOOST_TEST_CONTEXT(dtype_name(dtype)) {
      model.set_activation_dtype(dtype);
      BOOST_TEST((model.hidden_states(tids).dtype() == dtype));
      BOOST_TEST((model.logits(tids).dtype() == DType::f32));  // public outputs stay f32
      const Run half = train_step(model, tids, ttargets, mode.loss_scale);
      BOOST_TEST(std::abs(half.loss - f32.loss) < 0.01f * f32.loss);
      double worst = 0;
      for (size_t i = 0; i < f32.grads.size(); ++i)
        worst = std::max(worst, relative_error(half.grads[i], f32.grads[i]));
      BOOST_TEST_MESSAGE(dtype_name(dtype) << ": loss " << half.loss << " against " << f32.loss
                                           << ", worst relative gradient error " << worst);
      for (size_t i = 0; i < f32.grads.size(); ++i)
        BOOST_TEST(
            relative_error(half.grads[i], f32.grads[i]) < mode.tolerance,
            model.parameters()[i].name << ": " << relative_error(half.grads[i], f32.grads[i]));
    }
  }
  model.set_activation_dtype(DType::f32);
  BOOST_TEST(train_step(model, tids, ttargets).loss == f32.loss);
  BOOST_CHECK_THROW(model.set_activation_dtype(DType::i8), Error);
}

BOOST_AUTO_TEST_CASE(ops_refuse_mixed_activation_types) {
  const Tensor a = Tensor::randn({4, 8}, 1, 0, 1.0f).to(DType::bf16);
  const Tensor b = Tensor::randn({4, 8}, 1, 1, 1.0f);
  BOOST_CHECK_THROW(ops::add(a, b), Error);
  BOOST_CHECK_THROW(ops::add(a, a.to(DType::f16)), Error);
  // Parameters stay f32: a 16-bit weight is refused by name.
  BOOST_CHECK_THROW(ops::linear(b, b.to(DType::bf16), Tensor()), Error);
  BOOST_CHECK_THROW(ag::cast(b, DType::i32), Error);
}

BOOST_AUTO_TEST_SUITE_END()
