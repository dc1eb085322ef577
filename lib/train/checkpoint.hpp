// Checkpoints: one directory per step under <output>/checkpoints, written
// by all ranks into ".tmp-step_N" and renamed to "step_N" by rank 0 only
// after every rank has finished, so a crash never leaves a half checkpoint
// that looks whole. A checkpoint holds named parts (parameter sets, each
// with its optimizer when it trains: PPO's actor and critic, a reference
// model) and key/value state (the loop's counters, loss scalers, the app's
// own). Contents:
//   <part>.h5                 params/<Hugging Face name> (f32)
//   <part>_optimizer_rank<R>.h5
//                             AdamW exp_avg / exp_avg_sq over the flat range
//                             [begin, end) of real parameters rank R owned
//   trainer.h5                the key/value state as attributes, the world
//                             size, and per part its numel and ZeRO stage
//   config.yaml               the resolved config of the run
//   checksums.json            every file's size and CRC-32 (written last; checked
//                             before a resume uses the checkpoint)
//   tokenizer.json ...        files the app adds (StateMap::set_file)
// The part named "model" keeps the names of the first format (model.h5,
// optimizer_rank<R>.h5, unprefixed numel and zero_stage), so checkpoints of
// earlier pretrain runs load unchanged. Optimizer shards are stored by flat
// range, so a run with another world size or ZeRO stage reads the pieces it
// needs (resharding).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "dist/data_parallel.hpp"

namespace turbine::train {

// Key/value state saved with a checkpoint.
class StateMap {
 public:
  using Value = std::variant<int64_t, double, std::string>;
  void set(const std::string& key, Value value) { values_[key] = std::move(value); }
  bool has(const std::string& key) const { return values_.count(key) > 0; }
  // Each throws naming the key when it is missing or of another kind
  // (get_double also reads an integer).
  int64_t get_int(const std::string& key) const;
  double get_double(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  const std::map<std::string, Value>& values() const { return values_; }
  // Files that travel with the checkpoint, written beside its parts (the
  // tokenizer.json that inference needs); not read back on resume.
  void set_file(const std::string& name, std::string content) { files_[name] = std::move(content); }
  const std::map<std::string, std::string>& files() const { return files_; }

 private:
  const Value& at(const std::string& key) const;
  std::map<std::string, Value> values_;
  std::map<std::string, std::string> files_;
};

// A named parameter set of a checkpoint, with its optimizer when it trains
// (null: weights only, e.g. a frozen reference model).
struct CheckpointPart {
  std::string name;
  const nn::ParameterList* params = nullptr;
  dist::DataParallelOptimizer* optimizer = nullptr;
};

// The parts of writing a checkpoint folder that every app's checkpoints share
// (CheckpointStore's, fedsim's rounds):
// - the files' sizes and CRC-32s, each fsynced and read back from the disk;
nlohmann::ordered_json digest_files(const std::filesystem::path& dir,
                                    const std::vector<std::string>& names);
// - checksums.json listing them, written last in `tmp_dir`, which is fsynced,
//   renamed to `final_dir`, and its parent fsynced;
void seal_checkpoint(const std::filesystem::path& tmp_dir, const std::filesystem::path& final_dir,
                     int64_t step, const nlohmann::ordered_json& files);
// - before writing: throws "DIR has only M free: <fix>" when it has less
//   than `needed` bytes;
void check_free_space(const std::string& dir, double needed, const std::string& fix);
// - before loading: what is wrong with a folder's files against its
//   checksums.json ("" if nothing, or when it has none: written before them);
std::string verify_checksums(const std::string& checkpoint);
// - the newest of `oldest_first` that `verify` passes (returns ""), nullopt
//   when there are none; each damaged one on the way is reported and, once an
//   intact one is found, moved aside as damaged-NAME so its step can be
//   written again. Throws when every one is damaged.
std::optional<std::string> newest_intact(
    const std::vector<std::string>& oldest_first,
    const std::function<std::string(const std::string&)>& verify);

class CheckpointStore {
 public:
  CheckpointStore(std::string checkpoints_dir, dist::Communicator& comm);

  // Complete checkpoints, oldest first.
  std::vector<std::string> complete() const;
  std::optional<std::string> latest() const;

  // Collective: the newest complete checkpoint whose files match their
  // checksums; each damaged one on the way is reported and skipped. Throws
  // when every checkpoint is damaged; nullopt when there is none.
  std::optional<std::string> resume_point();
  // What is wrong with a checkpoint's files ("" if nothing): a file missing,
  // or its size or CRC-32 not that of checksums.json. One written before
  // checksums existed passes. Any process.
  static std::string verify(const std::string& checkpoint);

  // Collective. Keeps the newest `keep` complete checkpoints (0: all).
  // Checks first that the file system has room for it; every file is read
  // back after an fsync for checksums.json; a failure on any rank removes
  // the partial folder and throws on every rank, naming the file, the cause
  // (disk full, read-only, folder deleted) and the bytes needed.
  void save(int64_t step, const std::vector<CheckpointPart>& parts, const StateMap& state,
            const std::string& config_yaml, int64_t keep);
  // Collective. Restores every part's weights and optimizer state
  // (resharded as needed) and returns the key/value state.
  StateMap load(const std::string& checkpoint, const std::vector<CheckpointPart>& parts);

  // One process: a weights-only checkpoint (parts without optimizers, step
  // 0) written as the folder `checkpoint` itself (an imported model), under
  // a temporary name renamed when complete; an existing folder is refused.
  static void save_weights(const std::string& checkpoint, const std::vector<CheckpointPart>& parts,
                           const StateMap& state, const std::string& config_yaml);
  // One part's weights only (init_from, inference); any process may call it.
  static void load_weights(const std::string& checkpoint, const nn::ParameterList& params,
                           const std::string& part = "model");
  // Every stored weight of one part, by name, in host memory; any process.
  static std::map<std::string, Tensor> read_weights(const std::string& checkpoint,
                                                    const std::string& part = "model");
  // Whether one part of a checkpoint stores a weight of that name, without
  // reading any; any process.
  static bool has_weight(const std::string& checkpoint, const std::string& name,
                         const std::string& part = "model");
  // The key/value state of a checkpoint (trainer.h5); any process.
  static StateMap read_state(const std::string& checkpoint);
  static std::string step_name(int64_t step);

 private:
  std::string dir_;
  dist::Communicator& comm_;
  bool written_ = false;  // a checkpoint was written (so a missing folder was deleted)
};

}  // namespace turbine::train
