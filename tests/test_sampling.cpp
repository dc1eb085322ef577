// Sampling (infer::sample_token) against its definitions on fixed logits:
// greedy, the repetition penalty, temperature, top-k and top-p as
// distributions (20000 seeded draws against the exact probabilities), the
// log-probability, and reproducibility from the seed.
#define BOOST_TEST_MODULE sampling
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <vector>

#include "infer/generate.hpp"

using namespace turbine;

namespace {

// Frequencies of each token over `draws` seeded draws.
std::vector<double> frequencies(const std::vector<float>& logits, const infer::SamplingOptions& o,
                                int draws) {
  std::vector<double> counts(logits.size(), 0);
  for (int i = 0; i < draws; ++i)
    counts[size_t(infer::sample_token(logits.data(), int64_t(logits.size()), o, {}, uint64_t(i)))] +=
        1.0 / draws;
  return counts;
}

// p_i proportional to weights_i, normalized.
std::vector<double> normalized(std::vector<double> weights) {
  double total = 0;
  for (double w : weights) total += w;
  for (double& w : weights) w /= total;
  return weights;
}

void check_close(const std::vector<double>& got, const std::vector<double>& want,
                 const char* what) {
  BOOST_REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i)
    // 20000 draws: one standard deviation is at most 0.0036.
    BOOST_TEST(std::abs(got[i] - want[i]) < 0.015, what << ": token " << i << " drawn "
                                                        << got[i] << ", expected " << want[i]);
}

const std::vector<float> kLogits = {std::log(0.5f), std::log(0.25f), std::log(0.15f),
                                    std::log(0.1f)};

}  // namespace

BOOST_AUTO_TEST_CASE(greedy_is_the_argmax_and_the_penalty_demotes_repeats) {
  infer::SamplingOptions o;
  o.temperature = 0;
  const std::vector<float> logits = {2.0f, 1.9f, -1.0f};
  BOOST_TEST(infer::sample_token(logits.data(), 3, o, {}, 0) == 0);
  o.repetition_penalty = 1.2;  // 2.0 / 1.2 = 1.67 < 1.9
  BOOST_TEST(infer::sample_token(logits.data(), 3, o, {0}, 0) == 1);
  BOOST_TEST(infer::sample_token(logits.data(), 3, o, {2}, 0) == 0);  // only seen tokens
  // A negative logit is multiplied: -0.5 * 2 = -1 < -0.55.
  const std::vector<float> negative = {-0.5f, -0.55f};
  o.repetition_penalty = 2.0;
  BOOST_TEST(infer::sample_token(negative.data(), 2, o, {0}, 0) == 1);
}

BOOST_AUTO_TEST_CASE(temperature_top_k_and_top_p_draw_their_distributions) {
  infer::SamplingOptions o;
  o.top_k = 0;
  o.seed = 5;
  o.temperature = 1.0;
  check_close(frequencies(kLogits, o, 20000), {0.5, 0.25, 0.15, 0.1}, "T=1");
  o.temperature = 2.0;  // p^(1/2), renormalized
  check_close(frequencies(kLogits, o, 20000),
              normalized({std::sqrt(0.5), std::sqrt(0.25), std::sqrt(0.15), std::sqrt(0.1)}), "T=2");
  o.temperature = 1.0;
  o.top_k = 3;
  check_close(frequencies(kLogits, o, 20000), normalized({0.5, 0.25, 0.15, 0}), "top_k=3");
  o.top_k = 0;
  o.top_p = 0.7;  // 0.5 < 0.7 <= 0.5 + 0.25: the first two
  check_close(frequencies(kLogits, o, 20000), normalized({0.5, 0.25, 0, 0}), "top_p=0.7");
  o.top_p = 0.4;  // the likeliest alone
  check_close(frequencies(kLogits, o, 2000), {1, 0, 0, 0}, "top_p=0.4");
}

BOOST_AUTO_TEST_CASE(log_probability_and_reproducibility) {
  infer::SamplingOptions o;
  o.top_k = 0;
  o.temperature = 1.5;  // the log-probability is the model's, before temperature
  o.seed = 9;
  for (uint64_t draw = 0; draw < 20; ++draw) {
    double logprob = 0;
    const int32_t token = infer::sample_token(kLogits.data(), 4, o, {}, draw, &logprob);
    BOOST_TEST(std::abs(logprob - std::log(std::vector<double>{0.5, 0.25, 0.15, 0.1}[size_t(token)])) < 1e-6);
    BOOST_TEST(infer::sample_token(kLogits.data(), 4, o, {}, draw) == token);
  }
}
