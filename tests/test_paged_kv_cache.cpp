// The paged KV cache (nn/paged_kv_cache.hpp): block accounting, and
// continuous batching against decoding each sequence alone with the dense
// cache: sequences join at different steps, prompts arrive in chunks under a
// token budget shared with the running decodes (Dynamic SplitFuse), blocks
// are scattered over the pool, and every logit row matches the sequence's
// own decoding (CPU, and cuda:0 when there is one: the emulated GPU in an
// emulate_cuda build).
#define BOOST_TEST_MODULE paged_kv_cache
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <numeric>

#include "autograd/tape.hpp"
#include "decode_compare.hpp"
#include "infer/generate.hpp"
#include "nn/paged_kv_cache.hpp"
#include "test_util.hpp"

using namespace turbine;

namespace {

nn::BloomConfig config() {
  nn::BloomConfig c;
  c.vocab_size = 97;
  c.hidden_size = 48;
  c.n_head = 6;
  c.n_layer = 3;
  return c;
}

// One sequence decoded alone with the dense cache: the logits after its
// prompt and after each greedy token (steps + 1 rows of vocab).
std::vector<std::vector<float>> alone(const infer::Decoder& decoder,
                                      const std::vector<int32_t>& prompt, int64_t steps) {
  const int64_t n = int64_t(prompt.size());
  nn::KvCache cache = decoder.new_cache(1, n + steps);
  Tensor logits = decoder.decode(Tensor::from_vector<int32_t>({1, n}, prompt), cache);
  std::vector<std::vector<float>> out;
  for (int64_t s = 0;; ++s) {
    out.push_back(logits.to_vector<float>());
    if (s == steps) break;
    const int32_t next = testing::greedy_tokens(logits)[0];
    logits = decoder.decode(Tensor::from_vector<int32_t>({1, 1}, {next}), cache);
  }
  return out;
}

struct Running {
  std::vector<int32_t> prompt, table;
  int64_t join_step = 0, cached = 0, generated = 0;
  int32_t next = 0;  // the token to feed once the prompt is in
};

}  // namespace

BOOST_AUTO_TEST_CASE(blocks_are_allocated_and_released_exactly) {
  nn::PagedKvCache cache(config(), 10, 4, Device::cpu());
  BOOST_TEST(cache.free_blocks() == 10);
  BOOST_TEST(cache.blocks_for(9) == 3);
  BOOST_TEST(cache.nbytes() == 10 * nn::PagedKvCache::block_bytes(config(), 4));
  std::vector<int32_t> a, b;
  BOOST_TEST(cache.allocate(3, a));
  BOOST_TEST(cache.allocate(7, b));
  BOOST_TEST(cache.free_blocks() == 0);
  std::vector<int32_t> c;
  BOOST_TEST(!cache.allocate(1, c));
  BOOST_TEST(c.empty());
  std::vector<int32_t> all = a;
  all.insert(all.end(), b.begin(), b.end());
  std::sort(all.begin(), all.end());
  std::vector<int32_t> expected(10);
  std::iota(expected.begin(), expected.end(), 0);
  BOOST_TEST(all == expected, boost::test_tools::per_element());  // each block once
  cache.release(a);
  BOOST_TEST(a.empty());
  BOOST_TEST(cache.free_blocks() == 3);
  BOOST_TEST(cache.used_blocks() == 7);
  cache.release(b);
  BOOST_TEST(cache.free_blocks() == 10);
  std::vector<int32_t> twice = {1};
  BOOST_CHECK_THROW(cache.release(twice), Error);  // block 1 is free already
}

BOOST_AUTO_TEST_CASE(continuous_batching_equals_decoding_alone) {
  const autograd::NoGradGuard inference;
  const std::vector<int64_t> lengths = {5, 1, 17, 9, 3};
  const std::vector<int64_t> joins = {0, 0, 1, 3, 6};
  const int64_t steps = 6, budget = 8, block_size = 4;
  for (const Device device : testing::test_devices()) {
    BOOST_TEST_CONTEXT(device.str()) {
      nn::Bloom model(config(), 5, device);
      model.set_training(false);
      const infer::Decoder decoder{model};
      std::vector<Running> seqs(lengths.size());
      std::vector<std::vector<std::vector<float>>> expected;
      for (size_t i = 0; i < seqs.size(); ++i) {
        for (int64_t t = 0; t < lengths[i]; ++t)
          seqs[i].prompt.push_back(int32_t((i * 13 + size_t(t) * 5 + 1) % 97));
        seqs[i].join_step = joins[i];
        expected.push_back(alone(decoder, seqs[i].prompt, steps));
      }
      nn::PagedKvCache cache = decoder.new_paged_cache(40, block_size);
      // A decoy takes a few blocks first, so the sequences' blocks are not
      // 0, 1, 2, ... in order.
      std::vector<int32_t> decoy;
      BOOST_REQUIRE(cache.allocate(3, decoy));
      double worst = 0;
      bool same_tokens = true;
      int64_t finished = 0;
      for (int64_t step = 0; finished < int64_t(seqs.size()); ++step) {
        BOOST_REQUIRE(step < 100);
        std::vector<nn::PagedKvCache::StepSequence> plan;
        std::vector<size_t> who;
        std::vector<int32_t> ids;
        int64_t left = budget;
        // Decodes first, then prompt chunks, as the serving engine does.
        for (int pass = 0; pass < 2; ++pass)
          for (size_t i = 0; i < seqs.size(); ++i) {
            Running& s = seqs[i];
            const bool in_prompt = s.cached < int64_t(s.prompt.size());
            if (s.join_step > step || s.generated > steps || left == 0) continue;
            if ((pass == 0) == in_prompt) continue;
            if (s.table.empty()) {
              BOOST_REQUIRE(cache.allocate(1, decoy));  // interleave blocks with the decoy's
              BOOST_REQUIRE(
                  cache.allocate(cache.blocks_for(int64_t(s.prompt.size()) + steps), s.table));
            }
            const int64_t n = in_prompt ? std::min(left, int64_t(s.prompt.size()) - s.cached) : 1;
            if (in_prompt)
              ids.insert(ids.end(), s.prompt.begin() + s.cached, s.prompt.begin() + s.cached + n);
            else
              ids.push_back(s.next);
            const bool logits = !in_prompt || s.cached + n == int64_t(s.prompt.size());
            plan.push_back({&s.table, s.cached, n, logits});
            if (logits) who.push_back(i);
            left -= n;
          }
        if (plan.empty()) continue;
        cache.begin(plan);
        const Tensor logits = decoder.decode_paged(
            Tensor::from_vector<int32_t>({1, int64_t(ids.size())}, ids), cache);
        BOOST_REQUIRE(logits.dim(0) == int64_t(who.size()));
        for (const nn::PagedKvCache::StepSequence& p : plan)
          for (Running& s : seqs)
            if (&s.table == p.table) s.cached += p.tokens;
        const std::vector<float> all = logits.to_vector<float>();
        const std::vector<int32_t> greedy = testing::greedy_tokens(logits);
        for (size_t r = 0; r < who.size(); ++r) {
          Running& s = seqs[who[r]];
          const std::vector<float> row(all.begin() + long(r) * 97, all.begin() + long(r + 1) * 97);
          const std::vector<float>& want = expected[who[r]][size_t(s.generated)];
          worst = std::max(worst, testing::norm_error(row, want));
          const int32_t want_token =
              testing::greedy_tokens(Tensor::from_vector<float>({1, 97}, want))[0];
          same_tokens = same_tokens && greedy[r] == want_token;
          s.next = want_token;  // feed the reference's token
          if (++s.generated > steps) {
            cache.release(s.table);  // its blocks are free at once
            ++finished;
          }
        }
      }
      BOOST_TEST(worst < 1e-5);
      BOOST_TEST(same_tokens);
      cache.release(decoy);
      BOOST_TEST(cache.free_blocks() == 40);
    }
  }
}
