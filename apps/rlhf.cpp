// rlhf: DeepSpeed-Chat's three steps for BLOOM (supervised fine-tuning, a
// reward model, PPO with the hybrid engine) on the shared training loop.
//   mpirun -np N rlhf sft|reward|ppo|all --config configs/rlhf/kjv.yaml [--set key=value]
//   [--resume]
// and VisualChat's vision encoder, an image classifier pretrained on its own:
//   mpirun -np N rlhf encoder --config configs/rlhf/visualchat-encoder.yaml
#include "rlhf/rlhf.hpp"

#include <fmt/format.h>

#include "train/classify.hpp"

using namespace turbine;

int main(int argc, char** argv) {
  CLI::App cli{
      "RLHF for BLOOM in DeepSpeed-Chat's three steps:\n"
      "  mpirun -np N rlhf sft|reward|ppo|all --config FILE [--set key=value ...] [--resume]\n"
      "sft trains the policy on prompt + chosen answer, reward trains BLOOM with a value head on\n"
      "the pairs, ppo optimizes the policy against the reward model (actor, critic, frozen\n"
      "reference and reward). all runs the three in order, each from the previous one's final\n"
      "checkpoint; with --resume it skips finished steps and continues the unfinished one.\n"
      "Steps write <output.dir>/<step>/. --set key=value applies to every step,\n"
      "--set ppo.key=value to one. SIGUSR1 or SIGTERM stops after the current step's\n"
      "checkpoint with exit status 75.\n"
      "encoder pretrains VisualChat's vision encoder (model.arch: vit) as an image classifier\n"
      "(Fashion-MNIST by default); sft with model.type: visualchat then trains on dialogues."};
  std::string step;
  cli.add_option("step", step, "sft, reward, ppo, all or encoder")
      ->required()
      ->check(CLI::IsMember({"sft", "reward", "ppo", "all", "encoder"}));
  train::JobFlags flags;
  flags.add_to(cli);
  CLI11_PARSE(cli, argc, argv);
  if (step == "encoder") {
    train::Job job(&argc, &argv);
    return train::run_classify_app(job, flags, "rlhf-encoder");
  }

  std::vector<rlhf::Phase> phases;
  if (step == "sft" || step == "all") phases.push_back(rlhf::Phase::sft);
  if (step == "reward" || step == "all") phases.push_back(rlhf::Phase::reward);
  if (step == "ppo" || step == "all") phases.push_back(rlhf::Phase::ppo);

  train::Job job(&argc, &argv);
  const auto steps = job.configure_with<std::vector<rlhf::RlhfOptions>>([&](auto& ignored) {
    return rlhf::configure_steps(flags.config_path, phases, flags.all_overrides(),
                                 job.world().size(), ignored);
  });
  if (!steps) return 1;
  if (flags.dry_run) {
    std::string all;
    for (size_t i = 0; i < steps->size(); ++i)
      all += fmt::format("# ---- rlhf {}\n{}", rlhf::phase_name(phases[i]),
                         (*steps)[i].step.resolved_config_yaml);
    return job.print_resolved(all);
  }
  return job.run(
      [&] { return rlhf::run_steps(flags.config_path, phases, flags.all_overrides(), job); });
}
