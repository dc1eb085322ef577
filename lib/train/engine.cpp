// The training engine of one parameter set.
#include "train/engine.hpp"

#include "autograd/tape.hpp"
#include "core/log.hpp"

namespace turbine::train {

Engine::Engine(std::string name, dist::Communicator& comm, nn::ParameterList& params,
               const EngineOptions& options)
    : name_(std::move(name)),
      params_(params),
      options_(options),
      optimizer_(comm, nn::trainable(params), options.optimizer, options.zero),
      scaler_(options.precision.loss_scale) {}

void Engine::backward(const Tensor& loss, int64_t micro) {
  // fp16: the loss is scaled up so small gradients survive f16 rounding.
  const Tensor seed =
      Tensor::full({1}, float(loss_scale() / double(options_.accumulation)), loss.device());
  if (micro + 1 == options_.accumulation)
    optimizer_.backward_and_reduce(loss, seed);  // overlap_comm: reductions start here
  else
    autograd::backward(loss, seed);
}

Engine::StepResult Engine::step(double lr) {
  StepResult result;
  result.loss_scale = loss_scale();
  const auto update =
      optimizer_.step(static_cast<float>(lr), options_.gradient_clipping, result.loss_scale);
  result.grad_norm = update.grad_norm;
  result.applied = update.applied;
  if (options_.precision.loss_scaling) scaler_.update(!update.applied);
  return result;
}

std::string Engine::key(const std::string& name) const {
  return name_ == "model" ? name : name_ + "." + name;
}

void Engine::save_state(StateMap& state) const {
  if (!options_.precision.loss_scaling) return;
  const optim::LossScaler::State s = scaler_.state();
  state.set(key("loss_scale"), s.scale);
  state.set(key("loss_scale_clean_steps"), s.clean_steps);
  state.set(key("loss_scale_hysteresis_left"), int64_t(s.hysteresis_left));
}

void Engine::load_state(const StateMap& state) {
  // Checkpoints of runs without fp16 have no scaler state, and those from
  // before the clean-step count was kept have only the scale.
  if (!options_.precision.loss_scaling || !state.has(key("loss_scale"))) return;
  optim::LossScaler::State s;
  s.scale = state.get_double(key("loss_scale"));
  if (s.scale <= 0) return;
  if (state.has(key("loss_scale_clean_steps"))) {
    s.clean_steps = state.get_int(key("loss_scale_clean_steps"));
    s.hysteresis_left = static_cast<int>(state.get_int(key("loss_scale_hysteresis_left")));
  }
  scaler_.restore(s);
}

void log_engine(Engine& engine, Device device, int world) {
  const EngineOptions& o = engine.options();
  if (world > 1) {
    const int64_t padded = engine.optimizer().flat().padded_numel();
    log::info("gradient reduction: {} bucket(s) of up to {} values, {}",
              (padded + o.zero.bucket_elements - 1) / o.zero.bucket_elements,
              o.zero.bucket_elements,
              o.zero.overlap_comm ? "each started as soon as backward completes it (overlap_comm)"
                                  : "after backward");
  }
  log::info("compute: {} on rank 0, matrix products in {}{}", device.str(),
            kernels::math_mode_name(o.precision.math),
            o.precision.loss_scaling ? fmt::format(", loss scale {:g}", engine.loss_scale())
                                     : std::string());
  const double mib = 1.0 / (1 << 20);
  const dist::MemoryPlan plan = engine.optimizer().memory_plan();
  const double state_full = 8.0 * double(engine.optimizer().flat().numel()) * mib;
  log::info(
      "memory per rank: parameters {:.1f} MiB, gradients {:.1f} MiB, optimizer state "
      "{:.1f} MiB (ZeRO stage {})",
      plan.parameter_bytes * mib, plan.gradient_bytes * mib, plan.optimizer_bytes * mib,
      o.zero.stage);
  log::info(
      "optimizer state per rank by ZeRO stage: 0: {:.1f} MiB, 1: {:.1f} MiB, 2: {:.1f} "
      "MiB (stage 2 also reduce-scatters gradients: each rank receives only its shard)",
      state_full, state_full / world, state_full / world);
}

}  // namespace turbine::train
