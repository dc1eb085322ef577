// PPO's generation phase: the hybrid engine (KV-cache decoding on the
// actor's training weights) against generation by recomputation (the whole
// sequence again for every token, Hugging Face's generate with
// use_cache=False), for the same answers. Both answer the same prompts with
// the same per-row seeds; the answers are checked equal token for token,
// then the ratio of generated tokens/s is printed. End-of-text is ignored
// so every answer has --new-tokens tokens.
//   bench-rlhf-generate --checkpoint runs/rlhf-kjv/sft/checkpoints/step_00000200
//       [--prompts data/kjv-pairs/eval.jsonl] [--batch 8] [--new-tokens 128] [--repeats 3]
//       [--device cpu|cuda]
#include <CLI/CLI.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/timer.hpp"
#include "rlhf/data.hpp"
#include "rlhf/rollout.hpp"
#include "rlhf/steps.hpp"

using namespace turbine;

int main(int argc, char** argv) {
  CLI::App cli{"Hybrid-engine generation against recomputation (rlhf ppo's generation phase)"};
  std::string checkpoint, prompts_path = "data/kjv-pairs/eval.jsonl", json_out, device = "cpu";
  int64_t batch = 8, new_tokens = 128, repeats = 3;
  cli.add_option("--checkpoint", checkpoint, "the actor: a checkpoint (SFT's)")->required();
  cli.add_option("--prompts", prompts_path, "JSONL pairs whose prompts are answered");
  cli.add_option("--batch", batch, "prompts answered together");
  cli.add_option("--new-tokens", new_tokens, "tokens per answer");
  cli.add_option("--repeats", repeats, "timed runs of each path (the best is kept)");
  cli.add_option("--json", json_out, "also write the figures as JSON here");
  cli.add_option("--device", device, "where the actor runs: cpu, cuda or cuda:N");
  CLI11_PARSE(cli, argc, argv);
  try {
    const rlhf::StartingModel start = rlhf::load_starting_model(checkpoint, Device::parse(device));
    const auto pairs = rlhf::read_pairs(prompts_path);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<uint64_t> seeds;
    int64_t prompt_tokens = 0;
    for (int64_t i = 0; i < batch; ++i) {
      prompts.push_back(start.tokenizer.encode(" " + pairs[size_t(i) % pairs.size()].prompt));
      prompt_tokens += int64_t(prompts.back().size());
      seeds.push_back(1000 + uint64_t(i));
    }
    rlhf::RolloutOptions o;
    o.max_answer = new_tokens;
    o.sampling.temperature = 1.0;
    o.sampling.top_k = 0;
    o.eos = -1;  // every answer runs to its length
    o.pad = start.tokenizer.eos_id().value_or(0);
    double best[2] = {1e30, 1e30};
    std::vector<int64_t> answers[2];
    for (int path = 0; path < 2; ++path) {
      o.kv_cache = path == 0;
      for (int64_t r = 0; r < repeats; ++r) {
        const rlhf::Rollout out = rlhf::generate_rollout(start.model, prompts, seeds, o);
        best[path] = std::min(best[path], out.seconds);
        answers[path] = out.ids.to_vector<int64_t>();
      }
    }
    const bool same = answers[0] == answers[1];
    const double tokens = double(batch * new_tokens);
    const double hybrid = tokens / best[0], recompute = tokens / best[1];
    const nn::BloomConfig& c = start.model.config();
    std::printf(
        "model: %lld layers, hidden %lld, vocab %lld (%.2fM parameters); %lld prompts "
        "(%.1f tokens on average), %lld new tokens each, sampled (temperature 1), on %s\n",
        (long long)c.n_layer, (long long)c.hidden_size, (long long)c.vocab_size,
        c.parameter_count() / 1e6, (long long)batch, double(prompt_tokens) / double(batch),
        (long long)new_tokens, device.c_str());
    std::printf("hybrid engine (KV cache):   %8.3f s  %9.1f tokens/s\n", best[0], hybrid);
    std::printf("recomputation (no cache):   %8.3f s  %9.1f tokens/s\n", best[1], recompute);
    std::printf("ratio: %.2fx; answers %s token for token\n", hybrid / recompute,
                same ? "equal" : "DIFFER");
    if (!json_out.empty()) {
      nlohmann::ordered_json j = {{"device", device},
                                  {"parameters", c.parameter_count()},
                                  {"batch", batch},
                                  {"new_tokens", new_tokens},
                                  {"hybrid_tokens_per_s", hybrid},
                                  {"recompute_tokens_per_s", recompute},
                                  {"ratio", hybrid / recompute},
                                  {"answers_equal", same}};
      std::FILE* f = std::fopen(json_out.c_str(), "w");
      if (f) {
        std::fprintf(f, "%s\n", j.dump(2).c_str());
        std::fclose(f);
      }
    }
    return same ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-rlhf-generate: %s\n", e.what());
    return 1;
  }
}
