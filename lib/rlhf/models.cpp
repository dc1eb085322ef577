// RLHF's models: region log-probabilities, the reward model, and loading
// the checkpoints one step hands to the next.
#include "rlhf/models.hpp"

#include <set>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "ops/ops.hpp"
#include "train/checkpoint.hpp"

namespace turbine::rlhf {

namespace {

// (B, count) i64 positions s_b + k + offset.
Tensor region_index(const std::vector<int64_t>& starts, int64_t count, int64_t offset,
                    int64_t width) {
  std::vector<int64_t> index;
  index.reserve(starts.size() * size_t(count));
  for (const int64_t s : starts) {
    TURBINE_CHECK(s >= 0 && s + count + offset <= width,
                  "region [{}, {}) is outside the sequence's {} positions", s + offset,
                  s + count + offset, width);
    for (int64_t k = 0; k < count; ++k) index.push_back(s + k + offset);
  }
  return Tensor::from_vector<int64_t>({int64_t(starts.size()), count}, index);
}

}  // namespace

Tensor region_log_probs(const nn::Bloom& model, const Tensor& ids,
                        const std::vector<int64_t>& starts, int64_t count) {
  TURBINE_CHECK(ids.ndim() == 2 && ids.dim(0) == int64_t(starts.size()),
                "region_log_probs: ids (B, T) with B starts, got {} and {} starts", ids.str(),
                starts.size());
  const int64_t width = ids.dim(1);
  const Tensor h = model.hidden_states(ids);  // (B, T, H)
  const Device device = h.device();
  const Tensor rows = ag::gather_rows(h, region_index(starts, count, 0, width - 1).to(device));
  const Tensor logits = ag::linear(rows, model.parameter("word_embeddings.weight"), Tensor());
  // The tokens the positions predict: ids[b, s_b + k + 1].
  const std::vector<int64_t> all = ids.to(Device::cpu()).to(DType::i64).to_vector<int64_t>();
  std::vector<int64_t> next;
  for (size_t b = 0; b < starts.size(); ++b)
    for (int64_t k = 0; k < count; ++k)
      next.push_back(all[b * size_t(width) + size_t(starts[b] + k + 1)]);
  return ag::token_log_probs(logits,
                             Tensor::from_vector<int64_t>({ids.dim(0), count}, next).to(device));
}

RewardModel::RewardModel(nn::Bloom base, uint64_t seed) : base_(std::move(base)) {
  nn::Init init{seed, 0x7a1e, base_.config().initializer_range, base_.device()};
  v_head_ = nn::Linear(base_.config().hidden_size, 1, false, init);
  refresh_parameters();
}

RewardModel::RewardModel(nn::Bloom base, nn::Linear v_head)
    : base_(std::move(base)), v_head_(std::move(v_head)) {
  refresh_parameters();
}

RewardModel RewardModel::frozen_copy() const {
  nn::Linear head;
  head.weight = nn::copy_of(v_head_.weight);
  head.weight.set_requires_grad(false);
  return RewardModel(base_.frozen_copy(), std::move(head));
}

void RewardModel::refresh_parameters() {
  params_ = base_.parameters();
  v_head_.parameters("v_head.", params_);
}

Tensor RewardModel::values(const Tensor& ids) const {
  const Tensor v = v_head_.forward(base_.hidden_states(ids));  // (B, T, 1)
  return ag::reshape(v, {ids.dim(0), ids.dim(1)});
}

Tensor RewardModel::region_values(const Tensor& ids, const std::vector<int64_t>& starts,
                                  int64_t count) const {
  TURBINE_CHECK(ids.ndim() == 2 && ids.dim(0) == int64_t(starts.size()),
                "region_values: ids (B, T) with B starts, got {} and {} starts", ids.str(),
                starts.size());
  const Tensor h = base_.hidden_states(ids);
  const Tensor rows = ag::gather_rows(h, region_index(starts, count, 0, ids.dim(1)).to(h.device()));
  return ag::reshape(v_head_.forward(rows), {ids.dim(0), count});
}

namespace {

// The checkpoint's weights for `params`: stored ones by name; a plain
// layer's weight whose checkpoint holds LoRA adapters gets them merged in
// (W + scaling B A, scaling from the checkpoint's state); adapters the
// model has but the checkpoint lacks keep their values (a fresh LoRA run).
void load_into(const std::string& checkpoint, const std::map<std::string, Tensor>& stored,
               const nn::ParameterList& params, const std::string& what) {
  const train::StateMap state = train::CheckpointStore::read_state(checkpoint);
  const auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  std::set<std::string> model_adapters;  // the model's own LoRA A weights
  for (const nn::Parameter& p : params)
    if (ends_with(p.name, ".lora_A.weight")) model_adapters.insert(p.name);
  for (const nn::Parameter& p : params) {
    const bool adapter = ends_with(p.name, ".lora_A.weight") || ends_with(p.name, ".lora_B.weight");
    const auto it = stored.find(p.name);
    if (it == stored.end()) {
      if (adapter) continue;
      TURBINE_FAIL("{}: parameter '{}' is missing: the checkpoint is not {}", checkpoint, p.name,
                   what);
    }
    TURBINE_CHECK(it->second.shape() == p.tensor.shape(),
                  "{}: parameter '{}' has shape {} but the model expects {}: a different model "
                  "size",
                  checkpoint, p.name, shape_str(it->second.shape()), shape_str(p.tensor.shape()));
    Tensor weight = it->second.to(DType::f32);
    const std::string module = p.name.substr(0, p.name.size() - std::string(".weight").size());
    const auto a = stored.find(module + ".lora_A.weight"),
               b = stored.find(module + ".lora_B.weight");
    if (ends_with(p.name, ".weight") && a != stored.end() && b != stored.end() &&
        model_adapters.count(module + ".lora_A.weight") == 0) {
      const autograd::NoGradGuard no_grad;
      const float scaling = float(state.get_double("lora_scaling"));
      weight = ops::add(weight, ops::scale(ops::matmul(b->second, a->second), scaling));
    }
    Tensor(p.tensor).copy_from(weight);
  }
}

}  // namespace

void load_policy(const std::string& checkpoint, nn::Bloom& model) {
  load_into(checkpoint, train::CheckpointStore::read_weights(checkpoint), model.parameters(),
            "a BLOOM of this shape");
}

void load_reward(const std::string& checkpoint, RewardModel& model) {
  const std::map<std::string, Tensor> stored = train::CheckpointStore::read_weights(checkpoint);
  TURBINE_CHECK(stored.count("v_head.weight") > 0,
                "{} has no value head (v_head.weight): it is not a reward model; give the "
                "checkpoint `rlhf reward` wrote (critic_model / reward_model)",
                checkpoint);
  load_into(checkpoint, stored, model.parameters(), "a reward model of this shape");
}

}  // namespace turbine::rlhf
