// Random-LTD schedule, layer-token and FLOP accounting, configuration.
#include "efficiency/random_ltd.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/error.hpp"
#include "core/log.hpp"

namespace turbine::efficiency {

int64_t RandomLtdConfig::kept_at(int64_t step) const {
  const double progress = double(step) / double(require_steps);
  int64_t kept = int64_t(std::floor(progress * double(max_value - min_value) + double(min_value)));
  kept -= kept % seq_per_step;
  return std::min(kept, max_value);
}

double RandomLtdConfig::layer_tokens(int64_t step, int64_t batch, int64_t seq,
                                     int64_t layers) const {
  if (!enabled) return double(batch) * double(seq) * double(layers);
  const int64_t kept = std::min(kept_at(step), seq);
  const int64_t dropping = int64_t(layer_ids.size());
  return double(batch) * (double(kept) * dropping + double(seq) * double(layers - dropping));
}

nn::TokenDropping RandomLtdConfig::dropping_at(int64_t step, uint64_t seed) const {
  if (!enabled) return {};
  return {layer_ids, kept_at(step), seed, uint64_t(step)};
}

namespace {
const std::string kRoot = "data_efficiency.data_routing";
const std::string kLtd = kRoot + ".random_ltd";
}  // namespace

void declare_random_ltd_config(io::ConfigSchema& s) {
  s.boolean(kRoot + ".enabled", false, "data routing (random-LTD) on");
  s.boolean(kLtd + ".enabled", false, "random layerwise token dropping on");
  s.integer(kLtd + ".total_layer_num", 0, "layers of the model; 0: model.n_layer").at_least(0);
  s.integer(kLtd + ".random_ltd_layer_num", 0,
            "layers that drop tokens; 0: all but the first and the last")
      .at_least(0);
  s.integers(kLtd + ".random_ltd_layer_id", {},
             "ids of the layers that drop tokens; empty: 1 .. n_layer-2");
  s.string(kLtd + ".model_type", "decoder", "model kind").one_of({std::string("decoder")});
  s.ignored(kLtd + ".model_mask_name",
            "Turbine's models take no mask argument to name: kept tokens attend by their "
            "original positions");
  s.ignored(kLtd + ".hidden_state_order",
            "Turbine's hidden states are always (batch, seq, hidden) and its layers are "
            "wrapped by position, not by argument order");
  s.integer(kLtd + ".random_ltd_schedule.min_value", 0,
            "tokens kept per sequence at the start; 0: data.seq_len / 2")
      .at_least(0);
  s.integer(kLtd + ".random_ltd_schedule.max_value", 0,
            "tokens kept per sequence at the end; 0: data.seq_len")
      .at_least(0);
  s.string(kLtd + ".random_ltd_schedule.schedule_type", "fixed_linear", "growth of kept tokens")
      .one_of({std::string("fixed_linear")});
  s.integer(kLtd + ".random_ltd_schedule.schedule_config.require_steps", 100,
            "steps over which kept tokens grow from min_value to max_value")
      .at_least(1);
  s.integer(kLtd + ".random_ltd_schedule.schedule_config.seq_per_step", 8,
            "kept tokens are a multiple of this")
      .at_least(1);
}

RandomLtdConfig random_ltd_from(const io::Config& c, int64_t n_layer, int64_t seq_len) {
  RandomLtdConfig r;
  r.enabled = c.get<bool>(kRoot + ".enabled") && c.get<bool>(kLtd + ".enabled");
  // data_efficiency.enabled is DeepSpeed's master switch (when declared).
  if (r.enabled && c.schema().find("data_efficiency.enabled") != nullptr &&
      !c.get<bool>("data_efficiency.enabled")) {
    log::warn(
        "{}: random-LTD is configured but data_efficiency.enabled is false, so it is off: "
        "set data_efficiency.enabled: true to use it",
        c.where(kLtd + ".enabled"));
    r.enabled = false;
  }
  if (!r.enabled) return r;
  const int64_t total = c.get<int64_t>(kLtd + ".total_layer_num");
  if (total != 0 && total != n_layer)
    c.fail(kLtd + ".total_layer_num",
           fmt::format("total_layer_num {} != model.n_layer {}: set it to {} or remove it", total,
                       n_layer, n_layer));
  r.layer_ids = c.get<std::vector<int64_t>>(kLtd + ".random_ltd_layer_id");
  if (r.layer_ids.empty())
    for (int64_t i = 1; i + 1 < n_layer; ++i) r.layer_ids.push_back(i);
  const int64_t count = c.get<int64_t>(kLtd + ".random_ltd_layer_num");
  if (count != 0 && count != int64_t(r.layer_ids.size()))
    c.fail(kLtd + ".random_ltd_layer_num",
           fmt::format("random_ltd_layer_num {} but random_ltd_layer_id lists {} layers: make "
                       "them agree",
                       count, r.layer_ids.size()));
  std::set<int64_t> seen;
  for (int64_t id : r.layer_ids) {
    if (id < 0 || id >= n_layer)
      c.fail(kLtd + ".random_ltd_layer_id",
             fmt::format("layer id {} is out of range: the model has layers 0 .. {}", id,
                         n_layer - 1));
    if (!seen.insert(id).second)
      c.fail(kLtd + ".random_ltd_layer_id", fmt::format("layer id {} is listed twice", id));
  }
  const std::string sched = kLtd + ".random_ltd_schedule";
  r.min_value = c.get<int64_t>(sched + ".min_value");
  r.max_value = c.get<int64_t>(sched + ".max_value");
  if (r.min_value == 0) r.min_value = seq_len / 2;
  if (r.max_value == 0) r.max_value = seq_len;
  if (r.min_value > r.max_value)
    c.fail(sched + ".min_value", fmt::format("min_value {} is above max_value {}: tokens kept "
                                             "grow from min_value to max_value",
                                             r.min_value, r.max_value));
  if (r.max_value > seq_len)
    c.fail(sched + ".max_value",
           fmt::format("max_value {} exceeds data.seq_len {}", r.max_value, seq_len));
  r.require_steps = c.get<int64_t>(sched + ".schedule_config.require_steps");
  r.seq_per_step = c.get<int64_t>(sched + ".schedule_config.seq_per_step");
  if (r.min_value < r.seq_per_step)
    c.fail(sched + ".min_value",
           fmt::format("min_value {} is below seq_per_step {}: no token would be kept", r.min_value,
                       r.seq_per_step));
  return r;
}

}  // namespace turbine::efficiency
