// Writing, finding and reading checkpoints.
#include "train/checkpoint.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/log.hpp"
#include "tensor/hdf5.hpp"

namespace fs = std::filesystem;

namespace turbine::train {

namespace {

constexpr int64_t kFormatVersion = 1;

// File and attribute names of a part: "model" keeps the first format's.
std::string weights_file(const std::string& part) {
  return part + ".h5";
}
std::string shard_prefix(const std::string& part) {
  return part == "model" ? "optimizer_rank" : part + "_optimizer_rank";
}
std::string shard_file(const std::string& part, int rank) {
  return fmt::format("{}{:05d}.h5", shard_prefix(part), rank);
}
std::string part_key(const std::string& part, const std::string& key) {
  return part == "model" ? key : part + "." + key;
}

// Test hook: TURBINE_FAULT_CHECKPOINT_STEP=N kills the process while it writes
// the checkpoint of step N, after part of it is on disk.
void maybe_fail_during_write(int64_t step) {
  const char* fault = std::getenv("TURBINE_FAULT_CHECKPOINT_STEP");
  if (fault != nullptr && std::atoll(fault) == step) {
    log::error("TURBINE_FAULT_CHECKPOINT_STEP={}: simulating a crash while writing", step);
    std::_Exit(3);
  }
}

void check_checkpoint(const std::string& checkpoint, const std::string& part) {
  TURBINE_CHECK(fs::is_directory(checkpoint) && fs::exists(fs::path(checkpoint) / "trainer.h5"),
                "'{}' is not a Turbine checkpoint (a directory with trainer.h5)", checkpoint);
  TURBINE_CHECK(fs::exists(fs::path(checkpoint) / weights_file(part)),
                "checkpoint '{}' has no part '{}' ({} is missing)", checkpoint, part,
                weights_file(part));
}

void write_weights(const fs::path& dir, const CheckpointPart& part, int64_t step) {
  H5File weights((dir / weights_file(part.name)).string(), H5File::Mode::create);
  weights.set_attribute("format_version", kFormatVersion);
  weights.set_attribute("step", step);
  for (const nn::Parameter& p : *part.params) weights.write("params/" + p.name, p.tensor);
}

// trainer.h5 (counters, per-part optimizer layout, the key/value state),
// config.yaml and the state's files.
void write_state(const fs::path& dir, int64_t step, int world_size,
                 const std::vector<CheckpointPart>& parts, const StateMap& state,
                 const std::string& config_yaml) {
  H5File trainer((dir / "trainer.h5").string(), H5File::Mode::create);
  trainer.set_attribute("format_version", kFormatVersion);
  trainer.set_attribute("step", step);
  trainer.set_attribute("world_size", int64_t(world_size));
  for (const CheckpointPart& part : parts) {
    if (!part.optimizer) continue;
    trainer.set_attribute(part_key(part.name, "numel"), part.optimizer->flat().numel());
    trainer.set_attribute(part_key(part.name, "zero_stage"), int64_t(part.optimizer->zero().stage));
  }
  for (const auto& [key, value] : state.values())
    std::visit([&, &key = key](const auto& v) { trainer.set_attribute(key, v); }, value);
  std::ofstream(dir / "config.yaml") << config_yaml;
  for (const auto& [file, content] : state.files()) {
    TURBINE_CHECK(
        fs::path(file).filename() == file && file != "config.yaml" && file != "trainer.h5",
        "checkpoint file '{}' must be a plain name of its own", file);
    std::ofstream out(dir / file, std::ios::binary);
    out << content;
    TURBINE_CHECK(out.good(), "checkpoint: cannot write {}", (dir / file).string());
  }
}

// The optimizer range [begin, end) of real parameters this rank owns.
std::pair<int64_t, int64_t> owned_range(dist::DataParallelOptimizer& optimizer) {
  const int64_t real = optimizer.flat().numel();
  optim::AdamW& adamw = optimizer.optimizer();
  return {std::min(adamw.begin(), real), std::min(adamw.end(), real)};
}

void write_shard(const fs::path& dir, const CheckpointPart& part, int rank) {
  dist::DataParallelOptimizer& optimizer = *part.optimizer;
  const auto [begin, end] = owned_range(optimizer);
  H5File shard((dir / shard_file(part.name, rank)).string(), H5File::Mode::create);
  shard.set_attribute("begin", begin);
  shard.set_attribute("end", end);
  shard.set_attribute("numel", optimizer.flat().numel());
  shard.set_attribute("adam_step", optimizer.optimizer().steps_taken());
  shard.write("exp_avg", optimizer.optimizer().exp_avg().narrow(0, 0, end - begin));
  shard.write("exp_avg_sq", optimizer.optimizer().exp_avg_sq().narrow(0, 0, end - begin));
}

// Gathers this rank's optimizer range from whichever shards overlap it.
void read_shards(const std::string& checkpoint, const CheckpointPart& part, int rank) {
  dist::DataParallelOptimizer& optimizer = *part.optimizer;
  optim::AdamW& adamw = optimizer.optimizer();
  const auto [begin, end] = owned_range(optimizer);
  const std::string prefix = shard_prefix(part.name);
  int64_t covered = 0, adam_step = -1;
  for (const auto& entry : fs::directory_iterator(checkpoint)) {
    const std::string name = entry.path().filename().string();
    // "optimizer_rank00001.h5" is a shard of "model", not of a part named "optimizer".
    if (name.rfind(prefix, 0) != 0 || name.size() != prefix.size() + 8) continue;
    H5File shard(entry.path().string(), H5File::Mode::read);
    const int64_t b = shard.attribute_int("begin"), e = shard.attribute_int("end");
    const int64_t lo = std::max(b, begin), hi = std::min(e, end);
    adam_step = shard.attribute_int("adam_step");
    if (lo >= hi) continue;
    // Tensor copies, so the state may live on a GPU.
    adamw.exp_avg()
        .narrow(0, lo - begin, hi - lo)
        .copy_from(shard.read("exp_avg").narrow(0, lo - b, hi - lo));
    adamw.exp_avg_sq()
        .narrow(0, lo - begin, hi - lo)
        .copy_from(shard.read("exp_avg_sq").narrow(0, lo - b, hi - lo));
    covered += hi - lo;
  }
  TURBINE_CHECK(covered == end - begin,
                "{}: optimizer shards of part '{}' cover {} of the {} values rank {} needs (a "
                "shard file is missing)",
                checkpoint, part.name, covered, end - begin, rank);
  adamw.set_steps_taken(adam_step);
}

}  // namespace

const StateMap::Value& StateMap::at(const std::string& key) const {
  const auto it = values_.find(key);
  TURBINE_CHECK(it != values_.end(), "checkpoint state has no '{}' (a checkpoint of another app?)",
                key);
  return it->second;
}

int64_t StateMap::get_int(const std::string& key) const {
  const auto* v = std::get_if<int64_t>(&at(key));
  TURBINE_CHECK(v, "checkpoint state '{}' is not an integer", key);
  return *v;
}

double StateMap::get_double(const std::string& key) const {
  const Value& value = at(key);
  if (const auto* i = std::get_if<int64_t>(&value)) return double(*i);
  const auto* d = std::get_if<double>(&value);
  TURBINE_CHECK(d, "checkpoint state '{}' is not a number", key);
  return *d;
}

const std::string& StateMap::get_string(const std::string& key) const {
  const auto* v = std::get_if<std::string>(&at(key));
  TURBINE_CHECK(v, "checkpoint state '{}' is not a string", key);
  return *v;
}

CheckpointStore::CheckpointStore(std::string checkpoints_dir, dist::Communicator& comm)
    : dir_(std::move(checkpoints_dir)), comm_(comm) {}

std::string CheckpointStore::step_name(int64_t step) {
  return fmt::format("step_{:08d}", step);
}

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

void CheckpointStore::save(int64_t step, const std::vector<CheckpointPart>& parts,
                           const StateMap& state, const std::string& config_yaml, int64_t keep) {
  const std::string name = step_name(step);
  const fs::path final_dir = fs::path(dir_) / name;
  const fs::path tmp_dir = fs::path(dir_) / (".tmp-" + name);
  if (comm_.rank() == 0) {
    fs::create_directories(dir_);
    fs::remove_all(tmp_dir);  // leftovers of an earlier crash
    fs::create_directories(tmp_dir);
  }
  comm_.barrier();

  for (const CheckpointPart& part : parts) {
    if (comm_.rank() == 0) write_weights(tmp_dir, part, step);
    maybe_fail_during_write(step);
    // With stage 0 every rank holds the same full state: rank 0 writes it.
    if (part.optimizer && (part.optimizer->zero().stage > 0 || comm_.rank() == 0))
      write_shard(tmp_dir, part, comm_.rank());
  }
  if (comm_.rank() == 0) write_state(tmp_dir, step, comm_.size(), parts, state, config_yaml);
  // Rename only once every rank's files are on disk.
  const bool failed = comm_.any(false);
  TURBINE_CHECK(!failed, "checkpoint {}: a rank failed to write", name);
  if (comm_.rank() == 0) {
    TURBINE_CHECK(!fs::exists(final_dir), "checkpoint {} exists already: refusing to overwrite it",
                  final_dir.string());
    fs::rename(tmp_dir, final_dir);
    const auto all = complete();
    for (size_t i = 0; keep > 0 && i + keep < all.size(); ++i) fs::remove_all(all[i]);
  }
  comm_.barrier();
}

void CheckpointStore::save_weights(const std::string& checkpoint,
                                   const std::vector<CheckpointPart>& parts, const StateMap& state,
                                   const std::string& config_yaml) {
  write_folder_atomically(checkpoint, [&](const fs::path& tmp_dir) {
    for (const CheckpointPart& part : parts) {
      TURBINE_CHECK(part.optimizer == nullptr,
                    "save_weights writes weights only; part '{}' has an optimizer", part.name);
      write_weights(tmp_dir, part, 0);
    }
    write_state(tmp_dir, 0, 1, parts, state, config_yaml);
  });
}

void CheckpointStore::load_weights(const std::string& checkpoint, const nn::ParameterList& params,
                                   const std::string& part) {
  check_checkpoint(checkpoint, part);
  H5File weights((fs::path(checkpoint) / weights_file(part)).string(), H5File::Mode::read);
  for (const nn::Parameter& p : params) {
    const std::string key = "params/" + p.name;
    TURBINE_CHECK(weights.exists(key), "{}: parameter '{}' is missing (a different model?)",
                  weights.path(), p.name);
    const Tensor t = weights.read(key);
    TURBINE_CHECK(t.shape() == p.tensor.shape(),
                  "{}: parameter '{}' has shape {} but the model expects {}: the checkpoint is "
                  "of a different model size",
                  weights.path(), p.name, shape_str(t.shape()), shape_str(p.tensor.shape()));
    Tensor(p.tensor).copy_from(t);
  }
}

StateMap CheckpointStore::read_state(const std::string& checkpoint) {
  TURBINE_CHECK(fs::is_directory(checkpoint) && fs::exists(fs::path(checkpoint) / "trainer.h5"),
                "'{}' is not a Turbine checkpoint (a directory with trainer.h5)", checkpoint);
  H5File trainer((fs::path(checkpoint) / "trainer.h5").string(), H5File::Mode::read);
  TURBINE_CHECK(trainer.attribute_int("format_version") == kFormatVersion,
                "{}: checkpoint format {} is not supported (this build reads {})", trainer.path(),
                trainer.attribute_int("format_version"), kFormatVersion);
  StateMap state;
  for (const auto& [key, kind] : trainer.attributes()) {
    switch (kind) {
      case H5File::AttributeKind::integer:
        state.set(key, trainer.attribute_int(key));
        break;
      case H5File::AttributeKind::number:
        state.set(key, trainer.attribute_double(key));
        break;
      case H5File::AttributeKind::string:
        state.set(key, trainer.attribute_string(key));
        break;
    }
  }
  return state;
}

std::map<std::string, Tensor> CheckpointStore::read_weights(const std::string& checkpoint,
                                                             const std::string& part) {
  check_checkpoint(checkpoint, part);
  H5File weights((fs::path(checkpoint) / weights_file(part)).string(), H5File::Mode::read);
  std::map<std::string, Tensor> out;
  for (const std::string& name : weights.list("params")) out[name] = weights.read("params/" + name);
  return out;
}

bool CheckpointStore::has_weight(const std::string& checkpoint, const std::string& name,
                                 const std::string& part) {
  check_checkpoint(checkpoint, part);
  return H5File((fs::path(checkpoint) / weights_file(part)).string(), H5File::Mode::read)
      .exists("params/" + name);
}

StateMap CheckpointStore::load(const std::string& checkpoint,
                               const std::vector<CheckpointPart>& parts) {
  for (const CheckpointPart& part : parts) check_checkpoint(checkpoint, part.name);
  const StateMap state = read_state(checkpoint);
  const std::string trainer_path = (fs::path(checkpoint) / "trainer.h5").string();
  for (const CheckpointPart& part : parts) {
    load_weights(checkpoint, *part.params, part.name);
    if (!part.optimizer) continue;
    const int64_t real = part.optimizer->flat().numel();
    const int64_t saved = state.get_int(part_key(part.name, "numel"));
    TURBINE_CHECK(saved == real, "{}: part '{}' of the checkpoint has {} parameters, the model {}",
                  trainer_path, part.name, saved, real);
    read_shards(checkpoint, part, comm_.rank());
  }
  const int64_t saved_world = state.get_int("world_size");
  if (saved_world != comm_.size())
    log::info("resharded optimizer state from {} to {} ranks", saved_world, comm_.size());
  return state;
}

}  // namespace turbine::train
