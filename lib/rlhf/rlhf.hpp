// The rlhf job: DeepSpeed-Chat's three steps on the training loop the
// other apps share (train::Loop, Engine, CheckpointStore).
//   sft     the policy's next-token loss on prompt + chosen (SftTask)
//   reward  BLOOM + v_head trained on the pairwise loss (RewardTask)
//   ppo     four models: actor and critic train, reference and reward stay
//           frozen; each step generates with the hybrid engine, scores the
//           answers, and runs ppo_epochs of clipped updates (PpoTask)
// A step writes <output.dir>/<step>/{config.yaml, metrics.jsonl,
// checkpoints/}; its final checkpoint is the next step's starting point.
#pragma once

#include <optional>
#include <string>

#include "rlhf/config.hpp"
#include "train/job.hpp"

namespace turbine::rlhf {

struct StepResult {
  int exit_status = 0;  // 0, or kExitStoppedResumable after a stop request
  std::string final_checkpoint;
};

// Runs one step on the job's ranks. Collective. A step that finishes
// records its final checkpoint in <step folder>/final_checkpoint.
StepResult run_step(const RlhfOptions& options, train::Job& job);

// The final checkpoint of a finished step's folder, or nullopt.
std::optional<std::string> finished_checkpoint(const std::string& step_dir);

// Every listed step's options from the config (errors of all of them at
// once). A step starts from the earlier steps' final checkpoints in the same
// output folder (reward: SFT's; ppo: SFT's actor, reward's critic), those of
// the chain (rlhf all) or finished before, unless its own section or a
// --set step.key names its model.
std::vector<RlhfOptions> configure_steps(const std::string& config_path,
                                         const std::vector<Phase>& phases,
                                         const std::vector<std::string>& overrides, int world,
                                         std::vector<io::Config::IgnoredKey>& ignored);

// Runs the steps in order; with --resume a finished step is skipped and an
// unfinished one continues. Returns the exit status (75 after a stop).
int run_steps(const std::string& config_path, const std::vector<Phase>& phases,
              const std::vector<std::string>& overrides, train::Job& job);

}  // namespace turbine::rlhf
