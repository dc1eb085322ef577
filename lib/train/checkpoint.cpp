// Writing, finding and reading checkpoints.
#include "train/checkpoint.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "core/log.hpp"
#include "tensor/hdf5.hpp"

namespace fs = std::filesystem;

namespace turbine::train {

namespace {

constexpr int64_t kFormatVersion = 1;

std::string shard_file(int rank) { return fmt::format("optimizer_rank{:05d}.h5", rank); }

// Test hook: TURBINE_FAULT_CHECKPOINT_STEP=N kills the process while it writes
// the checkpoint of step N, after part of it is on disk.
void maybe_fail_during_write(int64_t step) {
  const char* fault = std::getenv("TURBINE_FAULT_CHECKPOINT_STEP");
  if (fault != nullptr && std::atoll(fault) == step) {
    log::error("TURBINE_FAULT_CHECKPOINT_STEP={}: simulating a crash while writing", step);
    std::_Exit(3);
  }
}

void check_checkpoint(const std::string& checkpoint) {
  TURBINE_CHECK(fs::is_directory(checkpoint) && fs::exists(fs::path(checkpoint) / "model.h5") &&
                    fs::exists(fs::path(checkpoint) / "trainer.h5"),
                "'{}' is not a Turbine checkpoint (a directory with model.h5 and trainer.h5)",
                checkpoint);
}

}  // namespace

CheckpointStore::CheckpointStore(std::string checkpoints_dir, dist::Communicator& comm)
    : dir_(std::move(checkpoints_dir)), comm_(comm) {}

std::string CheckpointStore::step_name(int64_t step) { return fmt::format("step_{:08d}", step); }

std::vector<std::string> CheckpointStore::complete() const {
  std::vector<std::string> out;
  if (!fs::is_directory(dir_)) return out;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && name.rfind("step_", 0) == 0 &&
        fs::exists(entry.path() / "trainer.h5"))
      out.push_back(entry.path().string());
  }
  std::sort(out.begin(), out.end());  // zero-padded step numbers sort by step
  return out;
}

std::optional<std::string> CheckpointStore::latest() const {
  const auto all = complete();
  if (all.empty()) return std::nullopt;
  return all.back();
}

void CheckpointStore::save(const TrainerState& state, const nn::ParameterList& params,
                           dist::DataParallelOptimizer& optimizer, const std::string& config_yaml,
                           int64_t keep) {
  const std::string name = step_name(state.step);
  const fs::path final_dir = fs::path(dir_) / name;
  const fs::path tmp_dir = fs::path(dir_) / (".tmp-" + name);
  if (comm_.rank() == 0) {
    fs::create_directories(dir_);
    fs::remove_all(tmp_dir);  // leftovers of an earlier crash
    fs::create_directories(tmp_dir);
  }
  comm_.barrier();

  optim::AdamW& adamw = optimizer.optimizer();
  const int64_t real = optimizer.flat().numel();
  const int64_t begin = std::min(adamw.begin(), real), end = std::min(adamw.end(), real);
  // With stage 0 every rank holds the same full state: rank 0 writes it.
  const bool writes_shard = optimizer.zero().stage > 0 || comm_.rank() == 0;
  if (comm_.rank() == 0) {
    H5File model((tmp_dir / "model.h5").string(), H5File::Mode::create);
    model.set_attribute("format_version", kFormatVersion);
    model.set_attribute("step", state.step);
    for (const nn::Parameter& p : params) model.write("params/" + p.name, p.tensor);
  }
  maybe_fail_during_write(state.step);
  if (writes_shard) {
    H5File shard((tmp_dir / shard_file(comm_.rank())).string(), H5File::Mode::create);
    shard.set_attribute("begin", begin);
    shard.set_attribute("end", end);
    shard.set_attribute("numel", real);
    shard.set_attribute("adam_step", adamw.steps_taken());
    shard.write("exp_avg", adamw.exp_avg().narrow(0, 0, end - begin));
    shard.write("exp_avg_sq", adamw.exp_avg_sq().narrow(0, 0, end - begin));
  }
  if (comm_.rank() == 0) {
    H5File trainer((tmp_dir / "trainer.h5").string(), H5File::Mode::create);
    trainer.set_attribute("format_version", kFormatVersion);
    trainer.set_attribute("step", state.step);
    trainer.set_attribute("samples", state.samples);
    trainer.set_attribute("tokens", state.tokens);
    trainer.set_attribute("layer_tokens", state.layer_tokens);
    trainer.set_attribute("flops", state.flops);
    trainer.set_attribute("world_size", int64_t(comm_.size()));
    trainer.set_attribute("zero_stage", int64_t(optimizer.zero().stage));
    trainer.set_attribute("numel", real);
    trainer.set_attribute("data_identity", state.data_identity);
    trainer.set_attribute("loss_scale", state.loss_scaler.scale);
    trainer.set_attribute("loss_scale_clean_steps", state.loss_scaler.clean_steps);
    trainer.set_attribute("loss_scale_hysteresis_left", int64_t(state.loss_scaler.hysteresis_left));
    std::ofstream(tmp_dir / "config.yaml") << config_yaml;
  }
  // Rename only once every rank's files are on disk.
  const bool failed = comm_.any(false);
  TURBINE_CHECK(!failed, "checkpoint {}: a rank failed to write", name);
  if (comm_.rank() == 0) {
    TURBINE_CHECK(!fs::exists(final_dir),
                  "checkpoint {} exists already: refusing to overwrite it", final_dir.string());
    fs::rename(tmp_dir, final_dir);
    const auto all = complete();
    for (size_t i = 0; keep > 0 && i + keep < all.size(); ++i) fs::remove_all(all[i]);
  }
  comm_.barrier();
}

void CheckpointStore::load_weights(const std::string& checkpoint,
                                   const nn::ParameterList& params) {
  check_checkpoint(checkpoint);
  H5File model((fs::path(checkpoint) / "model.h5").string(), H5File::Mode::read);
  for (const nn::Parameter& p : params) {
    const std::string key = "params/" + p.name;
    TURBINE_CHECK(model.exists(key), "{}: parameter '{}' is missing (a different model?)",
                  model.path(), p.name);
    const Tensor t = model.read(key);
    TURBINE_CHECK(t.shape() == p.tensor.shape(),
                  "{}: parameter '{}' has shape {} but the model expects {}: the checkpoint is "
                  "of a different model size",
                  model.path(), p.name, shape_str(t.shape()), shape_str(p.tensor.shape()));
    Tensor(p.tensor).copy_from(t);
  }
}

TrainerState CheckpointStore::load(const std::string& checkpoint, const nn::ParameterList& params,
                                   dist::DataParallelOptimizer& optimizer) {
  check_checkpoint(checkpoint);
  load_weights(checkpoint, params);
  H5File trainer((fs::path(checkpoint) / "trainer.h5").string(), H5File::Mode::read);
  TURBINE_CHECK(trainer.attribute_int("format_version") == kFormatVersion,
                "{}: checkpoint format {} is not supported (this build reads {})",
                trainer.path(), trainer.attribute_int("format_version"), kFormatVersion);
  TrainerState state;
  state.step = trainer.attribute_int("step");
  state.samples = trainer.attribute_int("samples");
  state.tokens = trainer.attribute_int("tokens");
  state.layer_tokens = trainer.attribute_double("layer_tokens");
  state.flops = trainer.attribute_double("flops");
  state.data_identity = trainer.attribute_string("data_identity");
  // Checkpoints from before fp16 training have no scaler state, and those
  // from before the clean-step count was kept have only the scale.
  if (trainer.has_attribute("loss_scale"))
    state.loss_scaler.scale = trainer.attribute_double("loss_scale");
  if (trainer.has_attribute("loss_scale_clean_steps")) {
    state.loss_scaler.clean_steps = trainer.attribute_int("loss_scale_clean_steps");
    state.loss_scaler.hysteresis_left =
        static_cast<int>(trainer.attribute_int("loss_scale_hysteresis_left"));
  }
  const int64_t real = optimizer.flat().numel();
  TURBINE_CHECK(trainer.attribute_int("numel") == real,
                "{}: the checkpoint has {} parameters, the model {}", trainer.path(),
                trainer.attribute_int("numel"), real);

  // Gather this rank's optimizer range from whichever shards overlap it.
  optim::AdamW& adamw = optimizer.optimizer();
  const int64_t begin = std::min(adamw.begin(), real), end = std::min(adamw.end(), real);
  int64_t covered = 0, adam_step = -1;
  for (const auto& entry : fs::directory_iterator(checkpoint)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("optimizer_rank", 0) != 0) continue;
    H5File shard(entry.path().string(), H5File::Mode::read);
    const int64_t b = shard.attribute_int("begin"), e = shard.attribute_int("end");
    const int64_t lo = std::max(b, begin), hi = std::min(e, end);
    adam_step = shard.attribute_int("adam_step");
    if (lo >= hi) continue;
    // Tensor copies, so the state may live on a GPU.
    adamw.exp_avg().narrow(0, lo - begin, hi - lo).copy_from(
        shard.read("exp_avg").narrow(0, lo - b, hi - lo));
    adamw.exp_avg_sq().narrow(0, lo - begin, hi - lo).copy_from(
        shard.read("exp_avg_sq").narrow(0, lo - b, hi - lo));
    covered += hi - lo;
  }
  TURBINE_CHECK(covered == end - begin,
                "{}: optimizer shards cover {} of the {} values rank {} needs (a shard file is "
                "missing)",
                checkpoint, covered, end - begin, comm_.rank());
  adamw.set_steps_taken(adam_step);
  const int64_t saved_world = trainer.attribute_int("world_size");
  if (saved_world != comm_.size())
    log::info("resharded optimizer state from {} to {} ranks", saved_world, comm_.size());
  return state;
}

}  // namespace turbine::train
