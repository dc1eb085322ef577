// PPO's generation phase, with and without the hybrid engine's KV cache.
#include "rlhf/rollout.hpp"

#include <algorithm>

#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "core/timer.hpp"

namespace turbine::rlhf {

std::vector<int64_t> Rollout::starts() const {
  std::vector<int64_t> out;
  for (const int64_t p : prompt_lengths) out.push_back(p - 1);
  return out;
}

std::vector<int32_t> Rollout::answer(int64_t row) const {
  const int64_t width = ids.dim(1);
  const std::vector<int64_t> all = ids.to_vector<int64_t>();
  const int64_t first = row * width + prompt_lengths[size_t(row)];
  return std::vector<int32_t>(all.begin() + first,
                              all.begin() + first + answer_lengths[size_t(row)]);
}

namespace {

// Each live row's next token from its logits (B, vocab) on the host.
class Sampler {
 public:
  Sampler(const std::vector<std::vector<int32_t>>& prompts, const std::vector<uint64_t>& seeds,
          const RolloutOptions& o, int64_t vocab)
      : o_(o),
        vocab_(vocab),
        seeds_(seeds),
        text_(prompts),
        answers_(prompts.size()),
        done_(prompts.size(), false) {}

  // Appends each live row's token; returns the tokens fed next (0 for rows done).
  std::vector<int32_t> step(const Tensor& logits, int64_t draw) {
    const std::vector<float> all = logits.to_vector<float>();
    std::vector<int32_t> next(text_.size(), 0);
    for (size_t b = 0; b < text_.size(); ++b) {
      if (done_[b]) continue;
      infer::SamplingOptions s = o_.sampling;
      s.seed = seeds_[b];
      const int32_t token = infer::sample_token(all.data() + int64_t(b) * vocab_, vocab_, s,
                                                text_[b], uint64_t(draw));
      text_[b].push_back(token);
      answers_[b].push_back(token);
      next[b] = token;
      done_[b] = token == o_.eos || int64_t(answers_[b].size()) >= o_.max_answer;
    }
    return next;
  }
  bool all_done() const {
    return std::all_of(done_.begin(), done_.end(), [](bool d) { return d; });
  }
  const std::vector<bool>& done() const { return done_; }
  const std::vector<std::vector<int32_t>>& text() const { return text_; }
  const std::vector<std::vector<int32_t>>& answers() const { return answers_; }

 private:
  const RolloutOptions& o_;
  int64_t vocab_;
  const std::vector<uint64_t>& seeds_;
  std::vector<std::vector<int32_t>> text_, answers_;
  std::vector<bool> done_;
};

// The hybrid engine: left-padded prefill into one KV cache, then a token per step.
void with_cache(const nn::Bloom& model, const std::vector<std::vector<int32_t>>& prompts,
                Sampler& sampler, const RolloutOptions& o) {
  const int64_t rows = int64_t(prompts.size());
  int64_t width = 0;
  for (const auto& p : prompts) width = std::max(width, int64_t(p.size()));
  std::vector<int32_t> padded;
  std::vector<uint8_t> valid;
  for (const auto& p : prompts)
    for (int64_t t = 0; t < width; ++t) {
      const int64_t pad = width - int64_t(p.size());
      padded.push_back(t < pad ? o.pad : p[size_t(t - pad)]);
      valid.push_back(t < pad ? 0 : 1);
    }
  const infer::Decoder decoder{model};
  nn::KvCache cache = decoder.new_cache(rows, width + o.max_answer);
  Tensor logits = decoder.decode(Tensor::from_vector<int32_t>({rows, width}, padded), cache, valid);
  for (int64_t draw = 0;; ++draw) {
    const std::vector<int32_t> next = sampler.step(logits, draw);
    if (sampler.all_done()) break;
    // Rows that are done are fed a token whose logits nobody reads.
    logits = decoder.decode(Tensor::from_vector<int32_t>({rows, 1}, next), cache);
  }
}

// Recomputation: every step runs the whole right-padded text of the live rows.
void recompute(const nn::Bloom& model, Sampler& sampler, const RolloutOptions& o) {
  for (int64_t draw = 0; !sampler.all_done(); ++draw) {
    const auto& text = sampler.text();
    const int64_t rows = int64_t(text.size());
    int64_t width = 0;
    for (const auto& t : text) width = std::max(width, int64_t(t.size()));
    std::vector<int32_t> ids(size_t(rows * width), o.pad);
    std::vector<int64_t> last(static_cast<size_t>(rows));
    for (int64_t b = 0; b < rows; ++b) {
      std::copy(text[size_t(b)].begin(), text[size_t(b)].end(), ids.begin() + b * width);
      last[size_t(b)] = int64_t(text[size_t(b)].size()) - 1;
    }
    const Tensor logits = model.logits_at(Tensor::from_vector<int32_t>({rows, width}, ids),
                                          Tensor::from_vector<int64_t>({rows}, last));
    sampler.step(logits.to(Device::cpu()), draw);
  }
}

}  // namespace

Rollout generate_rollout(const nn::Bloom& model, const std::vector<std::vector<int32_t>>& prompts,
                         const std::vector<uint64_t>& seeds, const RolloutOptions& o) {
  TURBINE_CHECK(!prompts.empty() && seeds.size() == prompts.size(),
                "generate_rollout: {} prompts with {} seeds", prompts.size(), seeds.size());
  TURBINE_CHECK(o.max_answer >= 1, "max_answer_seq_len must be at least 1, got {}", o.max_answer);
  for (const auto& p : prompts) TURBINE_CHECK(!p.empty(), "generate_rollout: an empty prompt");
  const autograd::NoGradGuard inference;
  Timer timer;
  Sampler sampler(prompts, seeds, o, model.config().vocab_size);
  if (o.kv_cache)
    with_cache(model, prompts, sampler, o);
  else
    recompute(model, sampler, o);

  Rollout out;
  out.seconds = timer.seconds();
  int64_t longest_prompt = 0;
  for (size_t b = 0; b < prompts.size(); ++b) {
    out.prompt_lengths.push_back(int64_t(prompts[b].size()));
    out.answer_lengths.push_back(int64_t(sampler.answers()[b].size()));
    longest_prompt = std::max(longest_prompt, out.prompt_lengths.back());
    out.answer_width = std::max(out.answer_width, out.answer_lengths.back());
  }
  const int64_t rows = int64_t(prompts.size()), width = longest_prompt + out.answer_width;
  std::vector<int64_t> ids(size_t(rows * width), o.pad);
  for (int64_t b = 0; b < rows; ++b) {
    const auto& text = sampler.text()[size_t(b)];
    std::copy(text.begin(), text.end(), ids.begin() + b * width);
  }
  out.ids = Tensor::from_vector<int64_t>({rows, width}, ids);
  return out;
}

}  // namespace turbine::rlhf
