// Tokenizer::train: learns byte-level BPE merges from documents. Words (GPT-2
// pre-tokenizer pieces) are counted once; pair counts are kept up to date
// incrementally as merges rewrite the words that hold the merged pair, and a
// max-heap with lazy invalidation picks the most frequent pair each step.
// Ties go to the pair with the smaller (left id, right id), so training is
// deterministic.
#include <algorithm>
#include <queue>
#include <unordered_map>

#include "core/error.hpp"
#include "data/tokenizer.hpp"

namespace turbine::data {
namespace {

uint64_t pair_key(int32_t left, int32_t right) {
  return uint64_t{static_cast<uint32_t>(left)} << 32 | static_cast<uint32_t>(right);
}
int32_t left_of(uint64_t key) {
  return static_cast<int32_t>(key >> 32);
}
int32_t right_of(uint64_t key) {
  return static_cast<int32_t>(key & 0xFFFFFFFFu);
}

struct PairHash {
  size_t operator()(uint64_t key) const { return (key ^ (key >> 29)) * 0xBF58476D1CE4E5B9ull; }
};

struct Word {
  std::vector<int32_t> symbols;  // token ids
  int64_t count;                 // occurrences in the documents
};

struct Candidate {
  int64_t count;
  uint64_t pair;
  // Heap order: more frequent first, then the smaller pair.
  bool operator<(const Candidate& o) const {
    return count != o.count ? count < o.count : pair > o.pair;
  }
};

// Pair counts over all words, with the words each pair may occur in.
class PairStats {
 public:
  explicit PairStats(const std::vector<Word>& words) {
    for (size_t w = 0; w < words.size(); ++w) {
      const auto& s = words[w].symbols;
      for (size_t i = 0; i + 1 < s.size(); ++i) add(pair_key(s[i], s[i + 1]), words[w].count, w);
    }
    for (const auto& [pair, count] : counts_) queue_.push({count, pair});
  }

  // The most frequent pair and its count; nullopt when none is left.
  std::optional<Candidate> best() {
    while (!queue_.empty()) {
      const Candidate top = queue_.top();
      const int64_t now = count(top.pair);
      if (now == top.count && now > 0) return top;
      queue_.pop();  // stale: counts only fall, except of pairs pushed anew in flush()
      if (now > 0) queue_.push({now, top.pair});
    }
    return std::nullopt;
  }

  // Replaces every occurrence of pair (left to right) by merged in the words
  // that hold it, and updates the counts of the neighbouring pairs.
  void merge(uint64_t pair, int32_t merged, std::vector<Word>& words) {
    const int32_t a = left_of(pair);
    const int32_t b = right_of(pair);
    const std::vector<size_t> holders = std::move(where_[pair]);
    where_.erase(pair);
    counts_.erase(pair);
    for (const size_t w : holders) {
      std::vector<int32_t>& s = words[w].symbols;
      const int64_t n = words[w].count;
      size_t out = 0;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          if (out > 0) {
            change(pair, pair_key(s[out - 1], a), -n, w);
            change(pair, pair_key(s[out - 1], merged), n, w);
          }
          if (i + 2 < s.size()) {
            change(pair, pair_key(b, s[i + 2]), -n, w);
            change(pair, pair_key(merged, s[i + 2]), n, w);
          }
          s[out++] = merged;
          i += 2;
        } else {
          s[out++] = s[i++];
        }
      }
      s.resize(out);
    }
    for (const uint64_t grown : grown_) {
      if (const int64_t now = count(grown); now > 0) queue_.push({now, grown});
    }
    grown_.clear();
  }

 private:
  int64_t count(uint64_t pair) const {
    const auto found = counts_.find(pair);
    return found == counts_.end() ? 0 : found->second;
  }
  void add(uint64_t pair, int64_t n, size_t word) {
    counts_[pair] += n;
    std::vector<size_t>& holders = where_[pair];
    if (holders.empty() || holders.back() != word) holders.push_back(word);
  }
  void change(uint64_t merging, uint64_t pair, int64_t delta, size_t word) {
    if (pair == merging) return;  // gone from every word once this merge is done
    if (delta < 0) {
      counts_[pair] += delta;
      return;
    }
    add(pair, delta, word);
    grown_.push_back(pair);
  }

  std::unordered_map<uint64_t, int64_t, PairHash> counts_;
  std::unordered_map<uint64_t, std::vector<size_t>, PairHash> where_;  // may list extra words
  std::priority_queue<Candidate> queue_;
  std::vector<uint64_t> grown_;  // pairs whose count rose during the current merge
};

}  // namespace

Tokenizer Tokenizer::train(const std::vector<std::string>& documents, const TrainOptions& options) {
  const auto n_special = static_cast<int64_t>(options.special_tokens.size());
  TURBINE_CHECK(options.vocab_size >= 256 + n_special,
                "train: vocab_size {} is too small: it must hold the 256 byte tokens and {} "
                "special tokens",
                options.vocab_size, n_special);
  for (size_t k = 0; k < options.special_tokens.size(); ++k) {
    TURBINE_CHECK(!options.special_tokens[k].empty(), "train: special token {} is empty", k);
    TURBINE_CHECK(std::count(options.special_tokens.begin(), options.special_tokens.end(),
                             options.special_tokens[k]) == 1,
                  "train: special token '{}' is listed twice", options.special_tokens[k]);
  }

  // Special tokens are cut out of the documents before counting, as encode does.
  std::unordered_map<std::string_view, int64_t> counts;
  auto count_text = [&](std::string_view text) {
    for (const std::string_view piece : gpt2_pretokenize(text)) ++counts[piece];
  };
  for (const std::string& document : documents) {
    split_at_specials(document, options.special_tokens, count_text, [](size_t) {});
  }
  std::vector<std::pair<std::string_view, int64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end());  // word order fixes the order of the work below
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (const auto& [piece, count] : sorted) {
    Word word{{}, count};
    for (const char byte : piece) word.symbols.push_back(static_cast<unsigned char>(byte));
    words.push_back(std::move(word));
  }

  std::vector<std::string> tokens(256);  // token b is byte b
  for (int b = 0; b < 256; ++b) tokens[b] = std::string(1, static_cast<char>(b));
  std::unordered_map<std::string, int32_t> id_of_bytes;
  for (int32_t b = 0; b < 256; ++b) id_of_bytes.emplace(tokens[b], b);

  const int64_t wanted = options.vocab_size - 256 - n_special;
  std::vector<std::pair<int32_t, int32_t>> merges;
  PairStats stats(words);
  int64_t learned = 0;  // new tokens; two merges can make the same token
  while (learned < wanted) {
    const std::optional<Candidate> best = stats.best();
    if (!best || best->count < std::max(options.min_frequency, 1)) break;
    const int32_t left = left_of(best->pair);
    const int32_t right = right_of(best->pair);
    const auto [made, fresh] =
        id_of_bytes.try_emplace(tokens[left] + tokens[right], static_cast<int32_t>(tokens.size()));
    merges.emplace_back(left, right);
    stats.merge(best->pair, made->second, words);
    if (fresh) {
      tokens.push_back(made->first);
      ++learned;
      if (options.progress && learned % 256 == 0) options.progress(learned, wanted);
    }
  }
  if (options.progress) options.progress(learned, wanted);

  std::vector<int32_t> special_ids;
  for (const std::string& special : options.special_tokens) {
    special_ids.push_back(static_cast<int32_t>(tokens.size()));
    tokens.push_back(special);
  }
  return from_parts(std::move(tokens), std::move(merges), special_ids,
                    fmt::format("a tokenizer trained on {} documents", documents.size()));
}

}  // namespace turbine::data
