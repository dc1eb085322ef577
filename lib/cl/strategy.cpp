// The strategies of strategy.hpp.
#include "cl/strategy.hpp"

#include <algorithm>
#include <cstring>
#include <set>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "core/error.hpp"

namespace turbine::cl {

const std::vector<std::string>& strategy_names() {
  static const std::vector<std::string> names = {"naive", "joint", "er",    "cb-er",        "agem",
                                                 "ewc",   "lwf",   "der++", "hierarchical", "miro"};
  return names;
}

bool uses_memory(const std::string& s) {
  return s == "er" || s == "cb-er" || s == "agem" || s == "der++" || uses_storage(s);
}
bool uses_storage(const std::string& s) {
  return s == "hierarchical" || s == "miro";
}
bool concat_replay(const std::string& s) {
  return s == "er" || s == "cb-er" || uses_storage(s);
}

Strategy::Strategy(const StrategyConfig& config, Learner& learner, std::unique_ptr<ReplayTier> tier)
    : config_(config), learner_(learner), stream_(learner.stream()), tier_(std::move(tier)) {
  const auto& names = strategy_names();
  TURBINE_CHECK(std::find(names.begin(), names.end(), config_.name) != names.end(),
                "strategy.name {}: not a strategy", config_.name);
  TURBINE_CHECK(uses_memory(config_.name) == (tier_ != nullptr), "strategy {}: {} replay memory",
                config_.name, uses_memory(config_.name) ? "needs a" : "takes no");
  if (config_.name == "ewc")
    ewc_ = std::make_unique<EwcState>(learner_.parameter_numel(), config_.ewc_lambda,
                                      config_.ewc_decay);
}

Strategy::~Strategy() = default;

std::vector<int64_t> Strategy::training_ids(int64_t task) const {
  if (config_.name != "joint") return stream_.train_ids(task);
  std::vector<int64_t> ids;
  for (int64_t t = 0; t <= task; ++t)
    ids.insert(ids.end(), stream_.train_ids(t).begin(), stream_.train_ids(t).end());
  return ids;
}

void Strategy::before_task(int64_t) {
  learner_.reset_optimizer();
}

void Strategy::gather(std::span<const int64_t> slots, std::vector<uint8_t>& payloads,
                      std::vector<int32_t>& labels) const {
  const int64_t bytes = stream_.payload_bytes();
  for (const int64_t slot : slots) {
    const auto p = tier_->payload(slot);
    payloads.insert(payloads.end(), p.begin(), p.begin() + bytes);
    labels.push_back(tier_->label(slot));
  }
}

StepResult Strategy::train_step(std::span<const int64_t> ids, int64_t iteration, bool observe) {
  const int64_t bytes = stream_.payload_bytes();
  const Device device = learner_.config().device;
  StepResult r;
  std::vector<uint8_t> payloads(ids.size() * size_t(bytes));
  std::vector<int32_t> labels(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    stream_.payload(ids[i], std::span<uint8_t>(payloads.data() + i * size_t(bytes), size_t(bytes)));
    labels[i] = stream_.label(ids[i]);
  }
  const size_t current = ids.size();
  if (tier_) tier_->begin_iteration(iteration);
  const bool replay = tier_ && tier_->size() > 0;
  const auto draw = uint64_t(iteration) * 2;  // two memory batches a step at most
  if (replay && concat_replay(config_.name)) {
    const auto slots = tier_->sample(config_.replay_batch, draw);
    gather(slots, payloads, labels);
    r.replayed = int64_t(slots.size());
  }
  learner_.zero_grad();
  const Batch batch = stream_.batch(payloads, labels, device);
  const Tensor out = learner_.logits(batch, true, uint64_t(iteration));
  Tensor loss = ag::cross_entropy(out, batch.targets);
  if (config_.name == "lwf" && previous_) {
    Tensor before;
    {
      autograd::NoGradGuard no_grad;
      before = previous_->logits(batch, false, 0);
    }
    loss = ag::add(loss, ag::scale(lwf_distillation(out, before, active_, config_.lwf_temperature),
                                   float(config_.lwf_alpha)));
  }
  if (config_.name == "der++" && replay) {
    const int64_t c = stream_.outputs();
    for (int part = 0; part < 2; ++part) {
      const auto slots = tier_->sample(config_.replay_batch, draw + uint64_t(part));
      std::vector<uint8_t> p;
      std::vector<int32_t> l;
      gather(slots, p, l);
      const Batch b = stream_.batch(p, l, device);
      const Tensor o = learner_.logits(b, true, uint64_t(iteration));
      if (part == 0) {
        std::vector<float> stored(slots.size() * size_t(c));
        for (size_t i = 0; i < slots.size(); ++i)
          std::memcpy(stored.data() + i * size_t(c), tier_->payload(slots[i]).data() + bytes,
                      size_t(c) * sizeof(float));
        const Tensor target =
            Tensor::from_vector<float>({int64_t(slots.size()), c}, stored, device);
        loss = ag::add(loss, ag::scale(mse(o, target), float(config_.der_alpha)));
      } else {
        loss = ag::add(loss, ag::scale(ag::cross_entropy(o, b.targets), float(config_.der_beta)));
      }
      r.replayed += int64_t(slots.size());
    }
  }
  autograd::backward(loss);
  r.loss = loss.to(Device::cpu()).item();
  if (config_.name == "agem" && replay) {
    std::vector<float> g = learner_.gradient();
    const auto slots = tier_->sample(config_.replay_batch, draw);
    std::vector<uint8_t> p;
    std::vector<int32_t> l;
    gather(slots, p, l);
    learner_.zero_grad();
    const Batch b = stream_.batch(p, l, device);
    autograd::backward(ag::cross_entropy(learner_.logits(b, true, uint64_t(iteration)), b.targets));
    r.projected = agem_project(g, learner_.gradient());
    projections_ += r.projected;
    learner_.set_gradient(g);
    r.replayed = int64_t(slots.size());
  }
  if (ewc_ && ewc_->active()) {
    std::vector<float> g = learner_.gradient();
    ewc_->add_penalty_gradient(learner_.parameters(), g);
    learner_.set_gradient(g);
  }
  learner_.step();
  if (tier_ && observe) {
    const int64_t stored = tier_->config().payload_bytes;
    std::vector<float> logits;
    if (stored > bytes)
      logits = out.narrow(0, 0, int64_t(current)).contiguous().to(Device::cpu()).to_vector<float>();
    std::vector<uint8_t> sample(static_cast<size_t>(stored));
    for (size_t i = 0; i < current; ++i) {
      std::memcpy(sample.data(), payloads.data() + i * size_t(bytes), size_t(bytes));
      if (stored > bytes)
        std::memcpy(sample.data() + bytes, logits.data() + i * size_t(stream_.outputs()),
                    size_t(stored - bytes));
      tier_->observe(ids[i], labels[i], sample);
    }
  }
  r.payload_bytes = (int64_t(current) + r.replayed) * bytes;
  return r;
}

int64_t Strategy::after_task(int64_t task, std::span<const int64_t> ids, int64_t batch) {
  int64_t read = 0;
  if (ewc_) {
    const int64_t bytes = stream_.payload_bytes();
    for (size_t first = 0; first < ids.size(); first += size_t(batch)) {
      const auto some = ids.subspan(first, std::min(ids.size() - first, size_t(batch)));
      std::vector<uint8_t> p(some.size() * size_t(bytes));
      std::vector<int32_t> l(some.size());
      for (size_t i = 0; i < some.size(); ++i) {
        stream_.payload(some[i], std::span<uint8_t>(p.data() + i * size_t(bytes), size_t(bytes)));
        l[i] = stream_.label(some[i]);
      }
      learner_.zero_grad();
      const Batch b = stream_.batch(p, l, learner_.config().device);
      autograd::backward(ag::cross_entropy(learner_.logits(b, false, 0), b.targets));
      ewc_->accumulate(learner_.gradient());
      read += int64_t(p.size());
    }
    learner_.zero_grad();
    ewc_->finish_task(learner_.parameters());
  }
  if (config_.name == "lwf") {
    previous_ = learner_.copy();
    std::set<int32_t> seen(active_.begin(), active_.end());
    for (const int32_t k : stream_.task_classes(task)) seen.insert(k);
    active_.assign(seen.begin(), seen.end());
  }
  return read;
}

namespace {

std::string float_bytes(const std::vector<float>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)};
}

std::vector<float> floats_from(const std::string& bytes, const std::string& what) {
  TURBINE_CHECK(bytes.size() % sizeof(float) == 0, "checkpoint: {} of {} bytes", what,
                bytes.size());
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}

}  // namespace

void Strategy::save(nlohmann::ordered_json& json, std::map<std::string, std::string>& files) {
  json["name"] = config_.name;
  json["projections"] = projections_;
  if (tier_) {
    TierState t = tier_->save();
    json["tier"] = std::move(t.json);
    files.merge(t.files);
  }
  if (ewc_) {
    json["ewc_tasks"] = ewc_->tasks();
    files["ewc_importance.bin"] = float_bytes(ewc_->importance());
    files["ewc_anchor.bin"] = float_bytes(ewc_->anchor());
  }
  if (previous_) {
    files["lwf_previous.bin"] = float_bytes(previous_->weights());
    json["lwf_active"] = active_;
  }
  files["velocity.bin"] = float_bytes(learner_.velocity());
}

void Strategy::restore(const nlohmann::ordered_json& json,
                       const std::function<std::string(const std::string&)>& file) {
  TURBINE_CHECK(json.at("name") == config_.name,
                "checkpoint: of strategy {}, this run's is {} (resume with the checkpoint's)",
                std::string(json.at("name")), config_.name);
  projections_ = json.at("projections");
  if (ewc_ && int64_t(json.at("ewc_tasks")) > 0)
    ewc_->restore(floats_from(file("ewc_importance.bin"), "EWC importance"),
                  floats_from(file("ewc_anchor.bin"), "EWC anchor"), json.at("ewc_tasks"));
  if (json.contains("lwf_active")) {
    previous_ = learner_.copy();
    previous_->set_weights(floats_from(file("lwf_previous.bin"), "LwF's previous model"));
    active_ = json.at("lwf_active").get<std::vector<int32_t>>();
  }
  learner_.set_velocity(floats_from(file("velocity.bin"), "the momentum"));
}

int64_t Strategy::state_bytes() const {
  int64_t bytes = tier_ ? tier_->ram_bytes() : 0;
  if (previous_) bytes += int64_t(previous_->weights().size() * sizeof(float));
  if (ewc_ && ewc_->active()) bytes += 2 * learner_.parameter_numel() * int64_t(sizeof(float));
  return bytes;
}

nlohmann::ordered_json Strategy::to_json() const {
  nlohmann::ordered_json j;
  j["name"] = config_.name;
  if (tier_) j["memory"] = tier_->to_json();
  if (config_.name == "agem") j["projections"] = projections_;
  j["state_bytes"] = state_bytes();
  return j;
}

}  // namespace turbine::cl
