// The rlhf job: configuring the steps and running them in order.
#include "rlhf/rlhf.hpp"

#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "core/log.hpp"

namespace turbine::rlhf {

namespace fs = std::filesystem;

std::optional<std::string> finished_checkpoint(const std::string& step_dir) {
  std::ifstream in(fs::path(step_dir) / "final_checkpoint");
  std::string path;
  if (!std::getline(in, path) || !fs::exists(fs::path(path) / "trainer.h5")) return std::nullopt;
  return path;
}

namespace {

// Defaults a step takes from the steps before it: their final checkpoints
// in the same output folder. In a chain (rlhf all) an earlier step that has
// not run yet is named by the folder its checkpoint will be in, so that the
// config checks pass before any work; run_steps resolves the step again,
// with the real path, when its turn comes. A step run alone takes only
// finished steps' checkpoints.
std::vector<std::string> chain_defaults(Phase phase, const std::string& output_dir, bool chain) {
  std::vector<std::string> out;
  const auto add = [&](const std::string& key, Phase earlier) {
    const std::string dir = step_dir(output_dir, earlier);
    if (const auto done = finished_checkpoint(dir))
      out.push_back(key + "=" + *done);
    else if (chain)
      out.push_back(key + "=" + dir + "/checkpoints (its final one, once " + phase_name(earlier) +
                    " has run)");
  };
  if (phase == Phase::reward) add("model_name_or_path", Phase::sft);
  if (phase == Phase::ppo) {
    add("actor_model_name_or_path", Phase::sft);
    add("critic_model_name_or_path", Phase::reward);
  }
  return out;
}

RlhfOptions configure(const std::string& path, Phase phase, bool chained,
                      const std::vector<std::string>& overrides, int world,
                      std::vector<io::Config::IgnoredKey>* ignored) {
  // The output folder the steps' folders are under, from this step's own
  // view (another step's section cannot break it).
  const std::string base = step_config(path, phase, overrides).get<std::string>("output.dir");
  const std::vector<std::string> defaults = chain_defaults(phase, base, chained);
  const io::Config config = step_config(path, phase, overrides, defaults);
  if (ignored)
    for (const auto& key : config.ignored())
      if (std::none_of(ignored->begin(), ignored->end(),
                       [&](const auto& k) { return k.key == key.key; }))
        ignored->push_back(key);
  return rlhf_options(config, phase, world);
}

}  // namespace

std::vector<RlhfOptions> configure_steps(const std::string& path, const std::vector<Phase>& phases,
                                         const std::vector<std::string>& overrides, int world,
                                         std::vector<io::Config::IgnoredKey>& ignored) {
  std::vector<RlhfOptions> out;
  std::vector<std::string> problems;
  for (size_t i = 0; i < phases.size(); ++i) {
    try {
      out.push_back(configure(path, phases[i], i > 0, overrides, world, &ignored));
    } catch (const Error& e) {
      problems.push_back(fmt::format("{}: {}", phase_name(phases[i]), e.what()));
    }
  }
  if (!problems.empty()) TURBINE_FAIL("{}", fmt::join(problems, "\n"));
  return out;
}

int run_steps(const std::string& path, const std::vector<Phase>& phases,
              const std::vector<std::string>& overrides, train::Job& job) {
  for (size_t i = 0; i < phases.size(); ++i) {
    // Resolved again now: a chained step's models are the earlier steps' results.
    const RlhfOptions options =
        configure(path, phases[i], i > 0, overrides, job.world().size(), nullptr);
    const std::string dir = options.step.run.output_dir;
    if (phases.size() > 1 && options.step.run.resume) {
      if (const auto done = finished_checkpoint(dir)) {
        if (job.leader())
          log::info("{}: finished already ({}); going on", phase_name(phases[i]), *done);
        continue;
      }
    }
    if (job.leader())
      log::info("==== rlhf {} ({} of {}): {}", phase_name(phases[i]), i + 1, phases.size(), dir);
    const StepResult result = run_step(options, job);
    if (result.exit_status != 0) return result.exit_status;
    if (job.leader()) {
      std::ofstream marker(fs::path(dir) / "final_checkpoint.tmp");
      marker << result.final_checkpoint << "\n";
      marker.close();
      fs::rename(fs::path(dir) / "final_checkpoint.tmp", fs::path(dir) / "final_checkpoint");
    }
    job.world().barrier();
  }
  return 0;
}

}  // namespace turbine::rlhf
