// RLHF's pieces: PPO's arithmetic and the reward model's pairwise loss
// against PyTorch (tests/golden/rlhf_ppo.h5 from tools/make-golden-rlhf),
// and the preference data: reading, errors, data_split, tokenizing, batches.
#define BOOST_TEST_MODULE rlhf
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "autograd/tape.hpp"
#include "grad_check.hpp"
#include "nn/lora.hpp"
#include "ops/ops.hpp"
#include "rlhf/data.hpp"
#include "rlhf/models.hpp"
#include "rlhf/ppo_math.hpp"
#include "rlhf/rollout.hpp"
#include "tensor/hdf5.hpp"
#include "test_util.hpp"

using namespace turbine;
using namespace turbine::testing;
namespace fs = std::filesystem;

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = floats(a), y = floats(b);
  BOOST_REQUIRE_EQUAL(x.size(), y.size());
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(double(x[i]) - y[i]));
  return worst;
}

constexpr double kTol = 1e-6;

}  // namespace

BOOST_AUTO_TEST_CASE(ppo_arithmetic_equals_deepspeed_chat) {
  const H5File g(golden("rlhf_ppo.h5"), H5File::Mode::read);
  const std::vector<int64_t> lengths = ints(g.read("ppo/answer_lengths"));
  const int64_t n = g.read("ppo/log_probs").dim(1);
  const rlhf::PpoConstants c;
  const Tensor rewards =
      rlhf::per_token_rewards(g.read("ppo/log_probs"), g.read("ppo/ref_log_probs"),
                              floats(g.read("ppo/scores")), lengths, c);
  BOOST_TEST(max_abs_diff(rewards, g.read("ppo/rewards")) < kTol);
  const rlhf::Gae gae = rlhf::advantages_and_returns(g.read("ppo/values"), rewards, lengths, c);
  BOOST_TEST(max_abs_diff(gae.advantages, g.read("ppo/advantages")) < kTol);
  BOOST_TEST(max_abs_diff(gae.returns, g.read("ppo/returns")) < kTol);

  const Tensor mask = rlhf::answer_mask(lengths, n);
  const Tensor log_probs = trainable(g.read("ppo/new_log_probs"));
  const Tensor actor =
      rlhf::actor_loss(log_probs, g.read("ppo/log_probs"), gae.advantages, mask, c.cliprange);
  BOOST_TEST(std::abs(actor.item() - g.read("ppo/actor_loss").item()) < kTol);
  autograd::backward(actor);
  BOOST_TEST(max_abs_diff(log_probs.grad(), g.read("ppo/actor_grad")) < kTol);

  const Tensor values = trainable(g.read("ppo/new_values"));
  const Tensor critic =
      rlhf::critic_loss(values, g.read("ppo/values"), gae.returns, mask, c.cliprange_value);
  BOOST_TEST(std::abs(critic.item() - g.read("ppo/critic_loss").item()) < kTol);
  autograd::backward(critic);
  BOOST_TEST(max_abs_diff(values.grad(), g.read("ppo/critic_grad")) < kTol);

  // The clip fractions count what the losses clipped.
  const double pf =
      rlhf::policy_clip_fraction(log_probs, g.read("ppo/log_probs"), mask, c.cliprange);
  BOOST_TEST(pf > 0.0);
  BOOST_TEST(pf < 1.0);
}

BOOST_AUTO_TEST_CASE(reward_pairwise_loss_equals_deepspeed_chat) {
  const H5File g(golden("rlhf_ppo.h5"), H5File::Mode::read);
  const Tensor ids = g.read("reward/ids");
  const rlhf::PairLossInputs in = rlhf::pair_loss_inputs(ids, ints(g.read("reward/lengths")));
  BOOST_TEST(in.divergence[1] == 6);  // chosen is a prefix of rejected
  const Tensor rewards = trainable(g.read("reward/rewards"));
  const rlhf::PairLoss loss = rlhf::pairwise_loss(rewards, in);
  BOOST_TEST(std::abs(loss.loss.item() - g.read("reward/loss").item()) < kTol);
  autograd::backward(loss.loss);
  BOOST_TEST(max_abs_diff(rewards.grad(), g.read("reward/grad")) < kTol);
  const auto chosen = floats(g.read("reward/chosen_scores")),
             rejected = floats(g.read("reward/rejected_scores"));
  for (size_t i = 0; i < chosen.size(); ++i) {
    BOOST_TEST(loss.chosen_scores[i] == chosen[i]);
    BOOST_TEST(loss.rejected_scores[i] == rejected[i]);
  }
}

BOOST_AUTO_TEST_CASE(pairs_that_cannot_be_compared_are_refused) {
  // Equal rows, and rows that differ at the first token (no shared prompt).
  const Tensor same = Tensor::from_vector<int64_t>({2, 3}, std::vector<int64_t>{1, 2, 3, 1, 2, 3});
  BOOST_TEST(contains(error_of([&] { rlhf::pair_loss_inputs(same, {3, 3}); }), "same tokens"));
  const Tensor first = Tensor::from_vector<int64_t>({2, 2}, std::vector<int64_t>{1, 2, 5, 2});
  BOOST_TEST(contains(error_of([&] { rlhf::pair_loss_inputs(first, {2, 2}); }), "first token"));
}

// ---- data -------------------------------------------------------------------------

namespace {

void write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

std::string pair_line(const std::string& prompt, const std::string& chosen,
                      const std::string& rejected) {
  return "{\"prompt\": \"" + prompt + "\", \"chosen\": \"" + chosen + "\", \"rejected\": \"" +
         rejected + "\"}\n";
}

data::Tokenizer tiny_tokenizer() {
  data::Tokenizer::TrainOptions options;
  options.vocab_size = 300;
  return data::Tokenizer::train(
      {"Human: which verse follows? Assistant: And God said, let there be "
       "light: and there was light. In the beginning."},
      options);
}

}  // namespace

BOOST_AUTO_TEST_CASE(bad_jsonl_lines_are_named) {
  TempDir dir("rlhf");
  const std::string path = dir.file("pairs.jsonl");
  write(path, pair_line("Human: a Assistant:", "b", "c") + "\n" +
                  "{\"prompt\": \"p\", \"chosen\": \"x\"}\n");
  std::string e = error_of([&] { rlhf::read_pairs(path); });
  BOOST_TEST(contains(e, path + ":3"));
  BOOST_TEST(contains(e, "\"rejected\" is missing"));
  write(path, "not json\n");
  BOOST_TEST(contains(error_of([&] { rlhf::read_pairs(path); }), path + ":1: not a JSON object"));
  write(path, "{\"prompt\": 3, \"chosen\": \"a\", \"rejected\": \"b\"}\n");
  BOOST_TEST(contains(error_of([&] { rlhf::read_pairs(path); }), "\"prompt\" must be a string"));
  write(path, "\n");
  BOOST_TEST(contains(error_of([&] { rlhf::read_pairs(path); }), "no preference pairs"));
  BOOST_TEST(
      contains(error_of([&] { rlhf::read_pairs(dir.file("absent.jsonl")); }), "cannot read"));
}

BOOST_AUTO_TEST_CASE(data_split_partitions_like_deepspeed_chat) {
  // 2,4,4 of 11: round(2.2) = 2, round(4.4) = 4 twice -> bounds 0, 2, 6, 10
  // shifted by 10 - 11 = -1 -> 0, 3, 7, 11 (DeepSpeed-Chat's arithmetic).
  const std::vector<double> split = {2, 4, 4};
  std::vector<int64_t> all;
  const std::vector<size_t> sizes = {3, 4, 4};
  for (int phase = 0; phase < 3; ++phase) {
    const auto part = rlhf::phase_indices(11, split, phase, 7);
    BOOST_TEST(part.size() == sizes[size_t(phase)]);
    all.insert(all.end(), part.begin(), part.end());
  }
  std::sort(all.begin(), all.end());
  for (int64_t i = 0; i < 11; ++i) BOOST_TEST(all[size_t(i)] == i);  // a partition
  BOOST_TEST(rlhf::phase_indices(11, split, 1, 7) == rlhf::phase_indices(11, split, 1, 7));
  BOOST_TEST(rlhf::phase_indices(11, split, 1, 7) != rlhf::phase_indices(11, split, 1, 8));
  // One phase takes everything.
  BOOST_TEST(rlhf::phase_indices(5, {0, 1, 0}, 1, 1).size() == 5u);
  BOOST_TEST(rlhf::phase_indices(5, {0, 1, 0}, 0, 1).empty());
}

BOOST_AUTO_TEST_CASE(samples_and_batches) {
  TempDir dir("rlhf");
  const std::string path = dir.file("pairs.jsonl");
  write(path, pair_line("Human: which verse follows? Assistant:", "And God said", "light light") +
                  pair_line("Human: which? Assistant:", "In the beginning", "In the beginning") +
                  pair_line("Human: which verse follows? Assistant:", "And there was light",
                            "And God said, let there be light"));
  const data::Tokenizer tok = tiny_tokenizer();
  const int32_t eos = *tok.eos_id();
  rlhf::TokenizeOptions o;
  o.max_seq_len = 64;
  // SFT: " " prompt, " " chosen, eos; the prompt's targets masked.
  const rlhf::PhaseData sft = rlhf::load_phase(path, rlhf::Phase::sft, {1, 0, 0}, 1, tok, o);
  BOOST_REQUIRE(sft.sft.size() == 3u);
  for (const rlhf::SftSample& s : sft.sft) {
    BOOST_TEST(s.ids.back() == eos);
    BOOST_TEST(tok.decode(std::vector<int32_t>(s.ids.begin(), s.ids.begin() + s.prompt_tokens))
                   .rfind(" Human:", 0) == 0u);
  }
  const rlhf::SftBatch b = rlhf::sft_batch({&sft.sft[0], &sft.sft[1]}, false, eos);
  const auto ids = ints(b.ids), targets = ints(b.targets);
  const int64_t width = b.ids.dim(1);
  int64_t counted = 0;
  for (int64_t r = 0; r < 2; ++r) {
    const rlhf::SftSample& s = sft.sft[size_t(r)];
    for (int64_t t = 0; t < width; ++t) {
      const int64_t target = targets[size_t(r * width + t)];
      const bool answer = t + 1 >= s.prompt_tokens && t + 1 < int64_t(s.ids.size());
      BOOST_TEST((target != -100) == answer);
      if (answer) {
        BOOST_TEST(target == s.ids[size_t(t + 1)]);
        ++counted;
      }
    }
  }
  BOOST_TEST(counted == b.targets_counted);
  // The prompt's tokens are targets too when asked.
  BOOST_TEST(rlhf::sft_batch({&sft.sft[0]}, true, eos).targets_counted ==
             int64_t(sft.sft[0].ids.size()) - 1);
  // A prompt that fills max_seq_len leaves nothing to learn: dropped, counted.
  o.max_seq_len = 3;
  const rlhf::PhaseData cut = rlhf::load_phase(path, rlhf::Phase::sft, {1, 0, 0}, 1, tok, o);
  BOOST_TEST(cut.sft.empty());
  BOOST_TEST(cut.dropped == 3);
  BOOST_TEST(contains(cut.drop_reason, "max_seq_len"));

  // Reward: the pair whose chosen equals rejected is left out.
  o.max_seq_len = 64;
  const rlhf::PhaseData reward = rlhf::load_phase(path, rlhf::Phase::reward, {0, 1, 0}, 1, tok, o);
  BOOST_TEST(reward.reward.size() == 2u);
  BOOST_TEST(reward.dropped == 1);
  const rlhf::RewardBatch rb = rlhf::reward_batch({&reward.reward[0], &reward.reward[1]}, eos);
  BOOST_TEST(rb.ids.dim(0) == 4);
  BOOST_TEST(rb.lengths[0] == int64_t(reward.reward[0].chosen.size()));
  BOOST_TEST(rb.lengths[2] == int64_t(reward.reward[0].rejected.size()));
  const rlhf::PairLossInputs in = rlhf::pair_loss_inputs(rb.ids, rb.lengths);
  for (size_t i = 0; i < 2; ++i) BOOST_TEST(in.divergence[i] > 0);

  // PPO: prompts longer than max_prompt_seq_len are dropped.
  o.max_prompt_seq_len = 6;
  const rlhf::PhaseData ppo = rlhf::load_phase(path, rlhf::Phase::ppo, {0, 0, 1}, 1, tok, o);
  BOOST_TEST(ppo.prompts.size() + size_t(ppo.dropped) == 3u);
  for (const rlhf::PromptSample& p : ppo.prompts) BOOST_TEST(p.prompt.size() <= 6u);
}

// ---- models and generation ----------------------------------------------------------

namespace {

nn::BloomConfig tiny_bloom() {
  nn::BloomConfig c;
  c.vocab_size = 61;
  c.hidden_size = 32;
  c.n_head = 4;
  c.n_layer = 2;
  return c;
}

std::vector<std::vector<int32_t>> some_prompts() {
  return {{5, 9, 2, 33}, {7}, {12, 40, 41, 42, 43, 44, 3}, {8, 8}};
}

// Makes every adapter's B non-zero so that LoRA changes the function.
void move_adapters(nn::Bloom& model) {
  uint64_t stream = 0;
  for (const nn::Parameter& p : model.parameters())
    if (p.name.ends_with("lora_B.weight"))
      Tensor(p.tensor).copy_from(Tensor::randn(p.tensor.shape(), 3, stream++, 0.2f));
}

}  // namespace

BOOST_AUTO_TEST_CASE(lora_gradients_by_finite_differences) {
  nn::Init init{11, 0, 0.3f};
  nn::LoraLinear layer(std::make_unique<nn::Linear>(6, 5, true, init), 3, 1.5f, 4, 0);
  const auto f = [&](const std::vector<Tensor>& in) {
    layer.lora_a = in[0];
    layer.lora_b = in[1];
    return std::vector<Tensor>{layer.forward(in[2])};
  };
  // B non-zero, so that A's gradient is non-zero too.
  BOOST_TEST(grad_check(f, {param({3, 6}, 1, 0.5f), param({5, 3}, 2, 0.5f), param({2, 4, 6}, 3)}) <
             1e-3);
}

BOOST_AUTO_TEST_CASE(merged_lora_generates_as_unmerged_forward) {
  nn::Bloom model(tiny_bloom(), 21);
  nn::apply_lora(model, {4, 2.0f, "", 5});
  move_adapters(model);
  const Tensor ids = random_ids(2, 9, 61, 1, 0);
  const autograd::NoGradGuard no_grad;
  const Tensor unmerged = model.logits(ids);
  const Tensor weight = model.parameter("h.1.mlp.dense_h_to_4h.weight").clone();
  BOOST_TEST(nn::merge_lora(model, true) == 8);
  BOOST_TEST(normalized_error(model.logits(ids), unmerged) < 1e-5);
  rlhf::RolloutOptions o;
  o.max_answer = 6;
  o.sampling.temperature = 0;
  const rlhf::Rollout merged = rlhf::generate_rollout(model, some_prompts(), {1, 2, 3, 4}, o);
  BOOST_TEST(nn::merge_lora(model, false) == 8);
  // Unmerged again: the base weight is back within rounding.
  BOOST_TEST(normalized_error(model.parameter("h.1.mlp.dense_h_to_4h.weight"), weight) < 1e-6);
  const rlhf::Rollout plain = rlhf::generate_rollout(model, some_prompts(), {1, 2, 3, 4}, o);
  BOOST_TEST(ints(merged.ids) == ints(plain.ids));
}

BOOST_AUTO_TEST_CASE(hybrid_engine_generates_as_recomputation) {
  nn::Bloom model(tiny_bloom(), 22);
  const std::vector<uint64_t> seeds = {10, 11, 12, 13};
  for (const double temperature : {0.0, 1.0}) {
    rlhf::RolloutOptions o;
    o.max_answer = 12;
    o.sampling.temperature = temperature;
    o.sampling.top_k = 0;
    o.eos = 60;
    o.pad = 0;
    const rlhf::Rollout cached = rlhf::generate_rollout(model, some_prompts(), seeds, o);
    o.kv_cache = false;
    const rlhf::Rollout recomputed = rlhf::generate_rollout(model, some_prompts(), seeds, o);
    BOOST_TEST(ints(cached.ids) == ints(recomputed.ids), "temperature " << temperature);
    BOOST_TEST(cached.answer_lengths == recomputed.answer_lengths);
    // Right-packed: each row is its prompt, then its answer.
    for (size_t b = 0; b < 4; ++b) {
      const auto row = cached.answer(int64_t(b));
      BOOST_TEST(int64_t(row.size()) == cached.answer_lengths[b]);
      BOOST_TEST((row.back() == 60 || int64_t(row.size()) == 12));
    }
    // A row's answer does not depend on the rows beside it.
    const rlhf::Rollout alone = rlhf::generate_rollout(model, {some_prompts()[2]}, {12}, o);
    BOOST_TEST(alone.answer(0) == cached.answer(2));
  }
}

BOOST_AUTO_TEST_CASE(region_log_probs_and_values) {
  nn::Bloom model(tiny_bloom(), 23);
  const Tensor ids = random_ids(3, 10, 61, 2, 0);
  const std::vector<int64_t> starts = {0, 3, 5};
  const int64_t count = 4;
  const Tensor region = rlhf::region_log_probs(model, ids, starts, count);
  const autograd::NoGradGuard no_grad;
  const auto full = ops::log_softmax(model.logits(ids)).to_vector<float>();  // (3, 10, 61)
  const auto id = ints(ids);
  const auto got = floats(region);
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t k = 0; k < count; ++k) {
      const int64_t t = starts[size_t(b)] + k;
      const float expected = full[size_t((b * 10 + t) * 61 + id[size_t(b * 10 + t + 1)])];
      BOOST_TEST(std::abs(got[size_t(b * count + k)] - expected) < 1e-5);
    }
  const rlhf::RewardModel rm(model.deep_copy(), 3);
  const auto all = floats(rm.values(ids));
  const auto some = floats(rm.region_values(ids, starts, count));
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t k = 0; k < count; ++k)
      BOOST_TEST(std::abs(some[size_t(b * count + k)] -
                          all[size_t(b * 10 + starts[size_t(b)] + k)]) < 1e-6);
  BOOST_TEST(rm.parameters().back().name == "v_head.weight");
  BOOST_TEST(contains(error_of([&] {
                        rlhf::region_log_probs(model, ids, {0, 3, 6}, 4);
                      }),
                      "outside"));
}
