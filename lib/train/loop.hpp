// The training loop every training app runs: the app supplies its step as a
// TrainTask (the forward and loss of one micro-batch, plus what a step
// consumed); the loop owns the rest: the step budget (steps and tokens),
// accumulation, backward, the optimizer step with clipping and loss scaling
// (through the Engine), evaluation and sample cadence, the progress line,
// metrics.jsonl (with each step's collective bytes), stop requests and checkpoints (with exact resume), and the
// output folder rules.
#pragma once

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/checkpoint.hpp"
#include "train/engine.hpp"
#include "train/schema.hpp"

namespace turbine::train {

// The loop's counters, saved with every checkpoint (global over ranks).
struct LoopCounters {
  int64_t step = 0;         // optimizer steps taken
  int64_t samples = 0;      // data samples consumed: the data position
  int64_t tokens = 0;       // training tokens consumed
  double layer_tokens = 0;  // tokens x layers they passed through (random-LTD counts kept ones)
  double flops = 0;         // training FLOPs spent
};

// What one step consumed over all ranks, and the task's own metrics fields.
struct StepWork {
  int64_t samples = 0, tokens = 0;
  double layer_tokens = 0, flops = 0;
  nlohmann::ordered_json metrics = nlohmann::ordered_json::object();
};

struct StepOutcome;
class Engine;

// The app's side of a training step.
class TrainTask {
 public:
  virtual ~TrainTask() = default;
  // The learning rate of the coming step.
  virtual double learning_rate(const LoopCounters& at) = 0;
  // Before the step's micro-batches (curriculum, token dropping, ...).
  virtual void begin_step(const LoopCounters& /*at*/) {}
  // Forward and loss of this rank's micro-batch `micro` of the step; the loop
  // runs backward. `at` holds the counters before the step.
  virtual Tensor micro_batch_loss(const LoopCounters& at, int64_t micro) = 0;
  // After the optimizer step: what the step consumed.
  virtual StepWork step_work(const LoopCounters& at) = 0;
  // The whole step, for a task whose step is more than one engine's
  // accumulate-and-update (PPO: generation, then epochs of updates of two
  // engines). The default is train_step on the loop's engine. It moves the
  // counters on by what the step consumed. Collective.
  virtual StepOutcome run_step(dist::Communicator& comm, Engine& engine, LoopCounters& counters);
  // Validation loss (collective), or NaN when the task has none.
  virtual double evaluate() { return NAN; }
  // Other figures of the last evaluate() (reward accuracy, ...): logged and
  // written to metrics.jsonl beside val_loss.
  virtual nlohmann::ordered_json eval_metrics() const { return nlohmann::ordered_json::object(); }
  // Whether the validation loss is a per-token negative log-likelihood
  // (then its perplexity is shown too).
  virtual bool loss_is_log_likelihood() const { return true; }
  // What step_work's tokens count, for the progress line's rate ("tok/s").
  virtual const char* throughput_unit() const { return "tok"; }
  // A sample of the model's output to print (rank 0 only), or "".
  virtual std::string sample(int64_t /*step*/) { return {}; }
  // The byte counters of the task's own process groups (sequence
  // parallelism's), cumulative; the loop reports each step's part.
  virtual dist::CommStats comm_stats() const { return {}; }
  // The task's own checkpoint state.
  virtual void save_state(StateMap& /*state*/) const {}
  virtual void load_state(const StateMap& /*state*/) {}
};

// One training step of `task` on `engine`, as the loop runs it: learning
// rate, the micro-batches' forward and backward, the optimizer step; the
// counters move on by what the step consumed. Collective. (The loop adds
// progress, metrics, evaluation and checkpoints; benchmarks call it alone.)
struct StepOutcome {
  double loss = 0;  // mean over the step's micro-batches and ranks
  double lr = 0;
  Engine::StepResult update;
  StepWork work;
  double seconds = 0;
};
StepOutcome train_step(dist::Communicator& comm, Engine& engine, TrainTask& task,
                       LoopCounters& counters);

struct LoopResult {
  int64_t steps = 0;
  double final_train_loss = NAN, final_val_loss = NAN;
  double tokens_per_second = 0;
  bool stopped_early = false;  // a stop signal ended the run after a checkpoint
};

class Loop {
 public:
  // `resolved_yaml` is written to <output.dir>/config.yaml when the run
  // starts and to every checkpoint. Refuses an output folder that holds
  // checkpoints unless the run resumes.
  Loop(dist::Communicator& comm, const RunOptions& run, Device device, Engine& engine,
       std::string resolved_yaml);
  // A frozen parameter set saved and restored with the engine's (a
  // reference model), or a second engine's part.
  void add_part(const CheckpointPart& part) { parts_.push_back(part); }
  // Restores the newest checkpoint when resuming (else init_from's weights)
  // into the engine, the extra parts and the task. Collective.
  void restore(TrainTask& task);
  const LoopCounters& counters() const { return counters_; }
  // Whether restore() continues a run (else the task starts its models).
  bool resuming() const { return run_.resume && existing_.has_value(); }
  // Trains until the budget is spent or a stop is requested. Collective.
  LoopResult run(TrainTask& task);

 private:
  void checkpoint(const TrainTask& task);
  // The step's metrics.jsonl line (without val_loss and time_s).
  nlohmann::ordered_json metrics_line(const StepOutcome& s, double tokens_per_s, double mfu) const;
  // Every collective's bytes on this rank so far: the world's, the
  // engine's on a GPU, the task's groups'.
  dist::CommStats comm_stats(const TrainTask& task) const;
  bool budget_left() const;

  dist::Communicator& comm_;
  RunOptions run_;
  Device device_;
  Engine& engine_;
  std::string resolved_yaml_;
  std::vector<CheckpointPart> parts_;
  CheckpointStore store_;
  std::optional<std::string> existing_;
  LoopCounters counters_;
};

}  // namespace turbine::train
