// RLHF data: reading, splitting, tokenizing and batching.
#include "rlhf/data.hpp"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "core/error.hpp"
#include "core/log.hpp"

namespace turbine::rlhf {

std::vector<PreferencePair> read_pairs(const std::string& path) {
  std::ifstream in(path);
  TURBINE_CHECK(in.good(), "cannot read {}: {}", path, std::strerror(errno));
  std::vector<PreferencePair> pairs;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // also numbers past double's range
      TURBINE_FAIL("{}:{}: not a JSON object: {}", path, number, e.what());
    }
    TURBINE_CHECK(row.is_object(),
                  "{}:{}: expected a JSON object with \"prompt\", \"chosen\" and "
                  "\"rejected\", got {}",
                  path, number, row.type_name());
    PreferencePair pair;
    pair.line = number;
    for (const auto& [key, field] : {std::pair{"prompt", &pair.prompt},
                                     {"chosen", &pair.chosen},
                                     {"rejected", &pair.rejected}}) {
      const auto it = row.find(key);
      TURBINE_CHECK(it != row.end(),
                    "{}:{}: the key \"{}\" is missing (each line needs \"prompt\", \"chosen\" and "
                    "\"rejected\", DeepSpeed-Chat's format)",
                    path, number, key);
      TURBINE_CHECK(it->is_string(), "{}:{}: \"{}\" must be a string, got {}", path, number, key,
                    it->type_name());
      *field = it->get<std::string>();
    }
    TURBINE_CHECK(!pair.prompt.empty() && !pair.chosen.empty(),
                  "{}:{}: \"prompt\" and \"chosen\" must not be empty", path, number);
    pairs.push_back(std::move(pair));
  }
  TURBINE_CHECK(!pairs.empty(), "{}: no preference pairs in the file", path);
  return pairs;
}

std::vector<int64_t> phase_indices(int64_t n, const std::vector<double>& split, int phase,
                                   uint64_t seed) {
  TURBINE_CHECK(phase >= 0 && size_t(phase) < split.size(), "phase {} of a {}-way data_split",
                phase + 1, split.size());
  const double total = std::accumulate(split.begin(), split.end(), 0.0);
  TURBINE_CHECK(total > 0, "data_split must have a positive weight");
  // DeepSpeed-Chat's get_raw_dataset_split_index.
  std::vector<int64_t> bounds{0};
  for (const double w : split)
    bounds.push_back(bounds.back() + int64_t(std::llround(w / total * double(n))));
  const int64_t diff = bounds.back() - n;
  for (size_t i = 1; i < bounds.size(); ++i) bounds[i] -= diff;
  data::EpochOrder order(std::max<int64_t>(n, 1), seed, true, 0x5b117u);
  std::vector<int64_t> out;
  for (int64_t i = std::max<int64_t>(0, bounds[size_t(phase)]); i < bounds[size_t(phase) + 1]; ++i)
    out.push_back(order.at(i));
  return out;
}

const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::sft:
      return "sft";
    case Phase::reward:
      return "reward";
    case Phase::ppo:
      return "ppo";
  }
  return "?";
}

int64_t PhaseData::size() const {
  return int64_t(sft.size() + reward.size() + prompts.size());
}

namespace {
// " " prompt " " answer <eos>, cut at max_seq_len; returns the prompt's token count.
std::vector<int32_t> dialogue(const data::Tokenizer& tokenizer, const std::string& prompt,
                              const std::string& answer, int32_t eos, int64_t max_seq_len,
                              int64_t* prompt_tokens) {
  std::vector<int32_t> ids = tokenizer.encode(" " + prompt);
  if (prompt_tokens) *prompt_tokens = int64_t(ids.size());
  const std::vector<int32_t> rest = tokenizer.encode(" " + answer);
  ids.insert(ids.end(), rest.begin(), rest.end());
  ids.push_back(eos);
  if (int64_t(ids.size()) > max_seq_len) ids.resize(size_t(max_seq_len));
  return ids;
}
}  // namespace

int32_t end_token_id(const data::Tokenizer& tokenizer, const TokenizeOptions& options) {
  if (options.end_token.empty()) {
    const auto eos = tokenizer.eos_id();
    TURBINE_CHECK(eos.has_value(),
                  "the tokenizer ({}) has no end-of-text token (<|endoftext|> or </s>) to end "
                  "answers: set end_of_conversation_token to one of its tokens",
                  tokenizer.identity());
    return *eos;
  }
  const auto id = tokenizer.token_id(options.end_token);
  TURBINE_CHECK(id.has_value(),
                "end_of_conversation_token '{}' is not a token of the model's tokenizer ({}): "
                "use one of its special tokens (e.g. <|endoftext|>)",
                options.end_token, tokenizer.identity());
  return *id;
}

PhaseData load_phase(const std::string& path, Phase phase, const std::vector<double>& split,
                     uint64_t seed, const data::Tokenizer& tokenizer,
                     const TokenizeOptions& options) {
  const std::vector<PreferencePair> pairs = read_pairs(path);
  const std::optional<int32_t> eos = end_token_id(tokenizer, options);
  PhaseData out;
  std::vector<int64_t> equal_lines;
  for (const int64_t index : phase_indices(int64_t(pairs.size()), split, int(phase), seed)) {
    const PreferencePair& pair = pairs[size_t(index)];
    ++out.pairs;
    switch (phase) {
      case Phase::sft: {
        SftSample s;
        s.ids = dialogue(tokenizer, pair.prompt, pair.chosen, *eos, options.max_seq_len,
                         &s.prompt_tokens);
        if (!options.train_on_prompt && s.prompt_tokens >= int64_t(s.ids.size())) {
          ++out.dropped;
          out.drop_reason = "the prompt fills max_seq_len";
          continue;
        }
        out.sft.push_back(std::move(s));
        break;
      }
      case Phase::reward: {
        if (pair.chosen == pair.rejected) {
          equal_lines.push_back(pair.line);
          ++out.dropped;
          continue;
        }
        RewardSample s;
        s.chosen =
            dialogue(tokenizer, pair.prompt, pair.chosen, *eos, options.max_seq_len, nullptr);
        s.rejected =
            dialogue(tokenizer, pair.prompt, pair.rejected, *eos, options.max_seq_len, nullptr);
        if (s.chosen == s.rejected) {
          ++out.dropped;
          out.drop_reason = "chosen and rejected are equal within max_seq_len";
          continue;
        }
        out.reward.push_back(std::move(s));
        break;
      }
      case Phase::ppo: {
        PromptSample s;
        s.prompt = tokenizer.encode(" " + pair.prompt);
        if (int64_t(s.prompt.size()) > options.max_prompt_seq_len) {
          ++out.dropped;
          out.drop_reason = "the prompt is longer than max_prompt_seq_len";
          continue;
        }
        s.chosen = pair.chosen;
        out.prompts.push_back(std::move(s));
        break;
      }
    }
  }
  if (!equal_lines.empty()) {
    std::string lines;
    for (size_t i = 0; i < std::min<size_t>(5, equal_lines.size()); ++i)
      lines += (i ? ", " : "") + std::to_string(equal_lines[i]);
    out.drop_reason = "chosen equals rejected";
    log::warn(
        "{}: {} pair(s) have \"chosen\" equal to \"rejected\" (line {}{}): a reward model "
        "cannot learn from them, so they are left out",
        path, equal_lines.size(), lines, equal_lines.size() > 5 ? ", ..." : "");
  }
  return out;
}

SftBatch sft_batch(const std::vector<const SftSample*>& rows, bool train_on_prompt, int32_t pad) {
  int64_t width = 1;
  for (const SftSample* s : rows) width = std::max(width, int64_t(s->ids.size()));
  const int64_t batch = int64_t(rows.size());
  std::vector<int64_t> ids(size_t(batch * width), pad), targets(size_t(batch * width), -100);
  SftBatch out;
  for (int64_t b = 0; b < batch; ++b) {
    const SftSample& s = *rows[size_t(b)];
    const int64_t n = int64_t(s.ids.size());
    for (int64_t t = 0; t < n; ++t) ids[size_t(b * width + t)] = s.ids[size_t(t)];
    // Position t predicts token t + 1; a prompt token is no target unless asked.
    for (int64_t t = 0; t + 1 < n; ++t) {
      if (!train_on_prompt && t + 1 < s.prompt_tokens) continue;
      targets[size_t(b * width + t)] = s.ids[size_t(t + 1)];
      ++out.targets_counted;
    }
  }
  out.ids = Tensor::from_vector<int64_t>({batch, width}, ids);
  out.targets = Tensor::from_vector<int64_t>({batch, width}, targets);
  return out;
}

RewardBatch reward_batch(const std::vector<const RewardSample*>& rows, int32_t pad) {
  int64_t width = 1;
  for (const RewardSample* s : rows)
    width = std::max({width, int64_t(s->chosen.size()), int64_t(s->rejected.size())});
  const int64_t batch = int64_t(rows.size());
  std::vector<int64_t> ids(size_t(2 * batch * width), pad);
  RewardBatch out;
  out.lengths.resize(size_t(2 * batch));
  for (int64_t b = 0; b < 2 * batch; ++b) {
    const RewardSample& s = *rows[size_t(b % batch)];
    const std::vector<int32_t>& row = b < batch ? s.chosen : s.rejected;
    for (size_t t = 0; t < row.size(); ++t) ids[size_t(b * width) + t] = row[t];
    out.lengths[size_t(b)] = int64_t(row.size());
  }
  out.ids = Tensor::from_vector<int64_t>({2 * batch, width}, ids);
  return out;
}

std::vector<int64_t> rank_rows(data::EpochOrder& order, int64_t first, int64_t micro_batch,
                               int64_t accumulation, int rank, int64_t micro) {
  std::vector<int64_t> out;
  const int64_t start = first + (int64_t(rank) * accumulation + micro) * micro_batch;
  for (int64_t i = 0; i < micro_batch; ++i) out.push_back(order.at(start + i));
  return out;
}

}  // namespace turbine::rlhf
