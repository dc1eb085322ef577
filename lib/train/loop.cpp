// The training loop.
#include "train/loop.hpp"

#include <filesystem>
#include <fstream>
#include <optional>

#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "core/signals.hpp"
#include "core/timer.hpp"
#include "train/job.hpp"
#include "train/metrics.hpp"

namespace fs = std::filesystem;

namespace turbine::train {

namespace {
constexpr double kMiB = 1.0 / (1 << 20);

void save_counters(const LoopCounters& c, StateMap& state) {
  state.set("step", c.step);
  state.set("samples", c.samples);
  state.set("tokens", c.tokens);
  state.set("layer_tokens", c.layer_tokens);
  state.set("flops", c.flops);
}

// ", accuracy 0.8125, ..." from the task's evaluation figures.
std::string eval_note(const TrainTask& task) {
  std::string note;
  const nlohmann::ordered_json metrics = task.eval_metrics();
  for (const auto& [key, value] : metrics.items())
    note += fmt::format(
        ", {} {}", key,
        value.is_number_float() ? fmt::format("{:.4f}", value.get<double>()) : value.dump());
  return note;
}

LoopCounters load_counters(const StateMap& state) {
  LoopCounters c;
  c.step = state.get_int("step");
  c.samples = state.get_int("samples");
  c.tokens = state.get_int("tokens");
  c.layer_tokens = state.get_double("layer_tokens");
  c.flops = state.get_double("flops");
  return c;
}
}  // namespace

Loop::Loop(dist::Communicator& comm, const RunOptions& run, Device device, Engine& engine,
           std::string resolved_yaml)
    : comm_(comm),
      run_(run),
      device_(device),
      engine_(engine),
      resolved_yaml_(std::move(resolved_yaml)),
      parts_{engine.checkpoint_part()},
      store_((fs::path(run.output_dir) / "checkpoints").string(), comm) {
  // Output folder: never silently mix two runs.
  const std::optional<std::string> newest = store_.latest();
  TURBINE_CHECK(!newest || run_.resume,
                "output folder '{}' holds checkpoints of a run ({}): pass --resume to continue "
                "it, or set output.dir to a new folder",
                run_.output_dir, *newest);
  if (run_.resume) existing_ = store_.resume_point();
}

void Loop::restore(TrainTask& task) {
  if (run_.resume && existing_) {
    const StateMap state = store_.load(*existing_, parts_);
    counters_ = load_counters(state);
    engine_.load_state(state);
    log::info("resumed from {} at step {} ({} samples consumed)", *existing_, counters_.step,
              counters_.samples);
    task.load_state(state);
  } else if (!run_.init_from.empty()) {
    CheckpointStore::load_weights(run_.init_from, engine_.parameters(), engine_.name());
    log::info("initialized weights from {}", run_.init_from);
  }
}

bool Loop::budget_left() const {
  return counters_.step < run_.train_steps &&
         (run_.train_tokens <= 0 || counters_.tokens < run_.train_tokens);
}

StepOutcome TrainTask::run_step(dist::Communicator& comm, Engine& engine, LoopCounters& counters) {
  return train_step(comm, engine, *this, counters);
}

StepOutcome train_step(dist::Communicator& comm, Engine& engine, TrainTask& task,
                       LoopCounters& counters) {
  Timer timer;
  StepOutcome out;
  out.lr = task.learning_rate(counters);
  task.begin_step(counters);
  engine.zero_grad();
  const int64_t accumulation = engine.options().accumulation;
  double loss_sum = 0;
  for (int64_t m = 0; m < accumulation; ++m) {
    const Tensor loss = task.micro_batch_loss(counters, m);
    engine.backward(loss, m);
    loss_sum += loss.item();
  }
  out.update = engine.step(out.lr);
  // backward runs only what the loss reaches: nodes a task recorded beside
  // it (a metric's forward) would otherwise stay for the next step.
  autograd::clear_tape();
  double loss = loss_sum / double(accumulation);
  comm.allreduce_sum(&loss, 1);
  out.loss = loss / comm.size();
  out.work = task.step_work(counters);
  counters.step += 1;
  counters.samples += out.work.samples;
  counters.tokens += out.work.tokens;
  counters.layer_tokens += out.work.layer_tokens;
  counters.flops += out.work.flops;
  out.seconds = timer.seconds();
  return out;
}

nlohmann::ordered_json Loop::metrics_line(const StepOutcome& s, double tokens_per_s,
                                          double mfu) const {
  const auto memory = memory_stats(device_);
  nlohmann::ordered_json line = {{"step", counters_.step},
                                 {"loss", s.loss},
                                 {"lr", s.lr},
                                 {"grad_norm", s.update.grad_norm},
                                 {"tokens", counters_.tokens},
                                 {"layer_tokens", counters_.layer_tokens},
                                 {"flops", counters_.flops}};
  line.update(s.work.metrics);
  line.update(
      nlohmann::ordered_json{{"tokens_per_s", tokens_per_s},
                             {"mfu", mfu},
                             {"step_s", s.seconds},
                             {"mem_mb", memory.current_bytes * kMiB},
                             {"peak_mem_mb", memory.peak_bytes * kMiB},
                             {"reserved_mb", backend_for(device_).reserved_bytes() * kMiB}});
  if (engine_.options().precision.loss_scaling) {
    line["loss_scale"] = s.update.loss_scale;
    line["skipped"] = !s.update.applied;
  }
  return line;
}

dist::CommStats Loop::comm_stats(const TrainTask& task) const {
  dist::CommStats all = comm_.stats();
  all += engine_.optimizer().device_stats();
  all += task.comm_stats();
  return all;
}

void Loop::checkpoint(const TrainTask& task) {
  StateMap state;
  save_counters(counters_, state);
  engine_.save_state(state);
  task.save_state(state);
  store_.save(counters_.step, parts_, state, resolved_yaml_, run_.checkpoint_keep);
}

LoopResult Loop::run(TrainTask& task) {
  const bool leader = comm_.rank() == 0;
  const fs::path out = run_.output_dir;
  // Written once the run is sure to start (a checkpoint that does not fit
  // the model leaves the folder as it was).
  if (leader) {
    fs::create_directories(out);
    std::ofstream(out / "config.yaml") << resolved_yaml_;
  }
  const double peak_gflops = gemm_peak_gflops(comm_, device_, run_.peak_tflops);
  reset_peak_memory(device_);  // peak_mem_mb is training's, not the GEMM measurement's
  std::optional<MetricsWriter> metrics;
  if (leader) metrics.emplace((out / "metrics.jsonl").string(), counters_.step);
  ProgressLine progress(stdout, leader, comm_.size() == 1);
  LoopResult result;
  Timer run_timer;
  double busy_seconds = 0;
  const int64_t first_step = counters_.step, first_tokens = counters_.tokens;

  const auto evaluate = [&] {
    result.final_val_loss = task.evaluate();
    const std::string note = eval_note(task);
    if (std::isnan(result.final_val_loss) && note.empty()) return;
    progress.break_line();
    if (std::isnan(result.final_val_loss))
      log::info("step {}: evaluation: {}", counters_.step, note.substr(2));
    else if (task.loss_is_log_likelihood())
      log::info("step {}: validation loss {:.4f} (perplexity {:.1f}){}", counters_.step,
                result.final_val_loss, std::exp(result.final_val_loss), note);
    else
      log::info("step {}: validation loss {:.4f}{}", counters_.step, result.final_val_loss, note);
  };
  const auto sample = [&] {
    if (!leader) return;
    const std::string text = task.sample(counters_.step);
    if (text.empty()) return;
    progress.break_line();
    log::info("step {} sample: {}", counters_.step, text);
  };

  dist::CommStats comm_before = comm_stats(task);
  while (budget_left()) {
    const StepOutcome s = task.run_step(comm_, engine_, counters_);
    result.final_train_loss = s.loss;
    if (!s.update.applied) {
      progress.break_line();
      log::warn(
          "step {}: fp16 gradients overflowed at loss scale {:g}: update skipped, scale "
          "now {:g}",
          counters_.step, s.update.loss_scale, engine_.loss_scale());
    }
    busy_seconds += s.seconds;
    const double tokens_per_s = double(s.work.tokens) / s.seconds;
    const double mfu = s.work.flops / s.seconds / (peak_gflops * 1e9 * comm_.size());
    const double avg_step = busy_seconds / double(counters_.step - first_step);
    double steps_left = double(run_.train_steps - counters_.step);
    if (run_.train_tokens > 0)
      steps_left =
          std::min(steps_left, double(std::max<int64_t>(0, run_.train_tokens - counters_.tokens)) /
                                   double(s.work.tokens));
    progress.show(fmt::format("step {}/{} | loss {:.4f} | lr {:.2e} | {:.0f} {}/s | MFU {:.1f}% "
                              "| ETA {}",
                              counters_.step, run_.train_steps, s.loss, s.lr, tokens_per_s,
                              task.throughput_unit(),
                              100 * mfu, format_duration(avg_step * steps_left)),
                  counters_.step % run_.steps_per_print == 0);

    const bool last = !budget_left();
    const bool eval_now =
        last || (run_.eval_interval > 0 && counters_.step % run_.eval_interval == 0);
    if (eval_now) evaluate();
    nlohmann::ordered_json line = metrics_line(s, tokens_per_s, mfu);
    line["time_s"] = run_timer.seconds();
    if (eval_now) {
      if (!std::isnan(result.final_val_loss)) line["val_loss"] = result.final_val_loss;
      line.update(task.eval_metrics());
    }
    // The step's bytes by collective on this rank (rank 0's; every rank of a
    // data-parallel run moves the same), evaluation included.
    const dist::CommStats comm_now = comm_stats(task);
    line["comm_allreduce_bytes"] = comm_now.allreduce_bytes - comm_before.allreduce_bytes;
    line["comm_reduce_scatter_bytes"] =
        comm_now.reduce_scatter_bytes - comm_before.reduce_scatter_bytes;
    line["comm_allgather_bytes"] = comm_now.allgather_bytes - comm_before.allgather_bytes;
    line["comm_broadcast_bytes"] = comm_now.broadcast_bytes - comm_before.broadcast_bytes;
    line["comm_all_to_all_bytes"] = comm_now.all_to_all_bytes - comm_before.all_to_all_bytes;
    comm_before = comm_now;
    if (metrics) metrics->write(line);
    if (last || (run_.sample_interval > 0 && counters_.step % run_.sample_interval == 0)) sample();
    // A stop request (any rank) ends the run after a checkpoint of this step.
    const bool stopping = !last && comm_.any(stop_requested());
    if (last || stopping ||
        (run_.checkpoint_interval > 0 && counters_.step % run_.checkpoint_interval == 0)) {
      checkpoint(task);
      progress.break_line();
      log::info("step {}: checkpoint {}", counters_.step,
                (out / "checkpoints" / CheckpointStore::step_name(counters_.step)).string());
    }
    result.tokens_per_second = double(counters_.tokens - first_tokens) / busy_seconds;
    if (stopping) {
      progress.break_line();
      log::info(
          "stopped at step {} of {} on request ({}): the checkpoint holds everything; "
          "continue with --resume",
          counters_.step, run_.train_steps, stop_requested() ? stop_signal_name() : "another rank");
      result.stopped_early = true;
      break;
    }
  }
  progress.break_line();
  if (counters_.step == first_step && !result.stopped_early) {  // resumed a finished run
    log::info("the run had already reached step {} of {}", counters_.step, run_.train_steps);
    evaluate();
    sample();
  }
  result.steps = counters_.step;
  return result;
}

}  // namespace turbine::train
