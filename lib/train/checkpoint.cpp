// Writing, finding and reading checkpoints.
#include "train/checkpoint.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

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

// Written last by rank 0: every file's size and CRC-32, read back from the
// disk after an fsync.
constexpr const char* kChecksums = "checksums.json";

void write_text(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  out.close();
  TURBINE_CHECK(out.good(), "{}: write failed", path.string());
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
  weights.close();
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
  trainer.close();
  write_text(dir / "config.yaml", config_yaml);
  for (const auto& [file, content] : state.files()) {
    TURBINE_CHECK(fs::path(file).filename() == file && file != "config.yaml" &&
                      file != "trainer.h5" && file != kChecksums,
                  "checkpoint file '{}' must be a plain name of its own", file);
    write_text(dir / file, content);
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
  shard.close();
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

namespace {

// Bytes this rank's files of a checkpoint take, roughly (HDF5's own
// structures and the state's attributes as a fixed allowance per file).
int64_t checkpoint_bytes(const std::vector<CheckpointPart>& parts, const StateMap& state,
                         const std::string& config_yaml, int rank) {
  constexpr int64_t kPerFile = 64 * 1024;
  int64_t bytes = 0;
  for (const CheckpointPart& part : parts) {
    if (rank == 0) {
      bytes += kPerFile;
      for (const nn::Parameter& p : *part.params) bytes += int64_t(p.tensor.nbytes());
    }
    if (part.optimizer && (part.optimizer->zero().stage > 0 || rank == 0)) {
      const auto [begin, end] = owned_range(*part.optimizer);
      bytes += kPerFile + 2 * (end - begin) * int64_t(sizeof(float));
    }
  }
  if (rank == 0) {
    bytes += kPerFile + int64_t(config_yaml.size());
    for (const auto& [file, content] : state.files()) bytes += int64_t(content.size());
  }
  return bytes;
}

// Runs `work`, returning what it threw ("" if nothing).
std::string attempt(const std::function<void()>& work) {
  try {
    work();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// An error's message without the source location TURBINE_CHECK appends.
std::string without_location(const std::string& message) {
  return message.substr(0, message.rfind(" [lib/"));
}

}  // namespace

void CheckpointStore::save(int64_t step, const std::vector<CheckpointPart>& parts,
                           const StateMap& state, const std::string& config_yaml, int64_t keep) {
  const std::string name = step_name(step);
  const fs::path final_dir = fs::path(dir_) / name;
  const fs::path tmp_dir = fs::path(dir_) / (".tmp-" + name);
  const bool leader = comm_.rank() == 0;
  double needed = double(checkpoint_bytes(parts, state, config_yaml, comm_.rank()));
  comm_.allreduce_sum(&needed, 1);
  const std::optional<std::string> previous = latest();
  // Every rank ends the same way: the ranks that failed say why, the
  // half-written folder is removed, and all throw.
  const auto fail_together = [&](const std::string& problem) {
    if (!comm_.any(!problem.empty())) return;
    if (leader) {
      std::error_code ignored;
      fs::remove_all(tmp_dir, ignored);
    }
    comm_.barrier();
    const std::string kept =
        previous ? fmt::format(
                       "the newest complete checkpoint, {}, is intact: continue from it "
                       "with --resume once the cause is fixed",
                       *previous)
                 : "no earlier checkpoint exists";
    if (problem.empty())
      throw CollectiveError(fmt::format("checkpoint {} abandoned: another rank failed to write "
                                        "its files (its message says why); {}",
                                        name, kept),
                            /*echo=*/false);
    // The source location of the inner error stays out of the sentence.
    const std::string what = without_location(problem);
    const std::string cause = write_failure_cause(dir_);
    throw CollectiveError(fmt::format(
        "checkpoint {} abandoned: {}{}; it needs about {}; its partial files "
        "are removed; {}",
        name, what, cause.empty() ? "" : " (" + cause + ")", human_bytes(needed), kept));
  };

  // The folder, and room for the whole checkpoint before a byte is written
  // (the previous one is removed only after this one is complete).
  fail_together(leader ? attempt([&] {
    if (written_ && !fs::exists(dir_))
      log::warn(
          "{} was deleted while the run was writing into it: recreating it (the "
          "checkpoints it held are gone)",
          dir_);
    fs::create_directories(dir_);
    fs::remove_all(tmp_dir);  // leftovers of an earlier crash
    fs::create_directories(tmp_dir);
    check_free_space(dir_, needed,
                     fmt::format("free space, lower checkpoint.keep (now {}) or set output.dir "
                                 "to a larger file system",
                                 keep));
  })
                       : "");
  written_ = true;

  // Every rank's files, each read back after an fsync for its checksum.
  nlohmann::ordered_json digests;
  fail_together(attempt([&] {
    std::vector<std::string> files;
    for (const CheckpointPart& part : parts) {
      if (leader) {
        write_weights(tmp_dir, part, step);
        files.push_back(weights_file(part.name));
      }
      maybe_fail_during_write(step);
      // With stage 0 every rank holds the same full state: rank 0 writes it.
      if (part.optimizer && (part.optimizer->zero().stage > 0 || leader)) {
        write_shard(tmp_dir, part, comm_.rank());
        files.push_back(shard_file(part.name, comm_.rank()));
      }
    }
    if (leader) {
      write_state(tmp_dir, step, comm_.size(), parts, state, config_yaml);
      files.push_back("trainer.h5");
      files.push_back("config.yaml");
      for (const auto& [file, content] : state.files()) files.push_back(file);
    }
    digests = digest_files(tmp_dir, files);
  }));
  if (digests.is_null()) digests = nlohmann::ordered_json::object();

  // Rank 0: the checksums of every rank's files, then the rename.
  const std::vector<std::string> all = comm_.allgather_strings(digests.dump());
  fail_together(leader ? attempt([&] {
    nlohmann::ordered_json files = nlohmann::ordered_json::object();
    for (const std::string& text : all) files.update(nlohmann::ordered_json::parse(text));
    TURBINE_CHECK(!fs::exists(final_dir), "checkpoint {} exists already: refusing to overwrite it",
                  final_dir.string());
    seal_checkpoint(tmp_dir, final_dir, step, files);
  })
                       : "");
  if (leader) {
    const auto complete_now = complete();
    for (size_t i = 0; keep > 0 && i + keep < complete_now.size(); ++i) {
      std::error_code error;
      fs::remove_all(complete_now[i], error);
      if (error)
        log::warn("cannot remove the old checkpoint {} (checkpoint.keep {}): {}", complete_now[i],
                  keep, error.message());
    }
  }
  comm_.barrier();
}

nlohmann::ordered_json digest_files(const fs::path& dir, const std::vector<std::string>& names) {
  nlohmann::ordered_json digests = nlohmann::ordered_json::object();
  for (const std::string& file : names) {
    const FileDigest d = digest_file((dir / file).string(), /*sync=*/true);
    digests[file] = {{"bytes", d.bytes}, {"crc32", fmt::format("{:08x}", d.crc32)}};
  }
  return digests;
}

void seal_checkpoint(const fs::path& tmp_dir, const fs::path& final_dir, int64_t step,
                     const nlohmann::ordered_json& files) {
  const nlohmann::ordered_json manifest = {
      {"format_version", kFormatVersion}, {"step", step}, {"files", files}};
  write_text(tmp_dir / kChecksums, manifest.dump(1) + "\n");
  digest_file((tmp_dir / kChecksums).string(), /*sync=*/true);
  sync_folder(tmp_dir.string());
  fs::rename(tmp_dir, final_dir);
  sync_folder(final_dir.parent_path().string());
}

void check_free_space(const std::string& dir, double needed, const std::string& fix) {
  const uint64_t free = free_bytes(dir);
  if (double(free) < needed)
    throw Error(fmt::format("{} has only {} free: {}", dir, human_bytes(double(free)), fix));
}

std::string verify_checksums(const std::string& checkpoint) {
  const fs::path dir = checkpoint;
  const fs::path manifest_path = dir / kChecksums;
  if (!fs::exists(manifest_path)) return "";  // written before checksums existed
  nlohmann::json manifest;
  try {
    std::ifstream in(manifest_path);
    manifest = nlohmann::json::parse(in);
    for (const auto& [file, expected] : manifest.at("files").items()) {
      const fs::path path = dir / file;
      if (!fs::exists(path)) return fmt::format("{} is missing", file);
      const FileDigest d = digest_file(path.string());
      const auto bytes = expected.at("bytes").get<uint64_t>();
      if (d.bytes != bytes)
        return fmt::format("{} has {} bytes, {} says {} (truncated or rewritten)", file, d.bytes,
                           kChecksums, bytes);
      const std::string crc = fmt::format("{:08x}", d.crc32);
      if (crc != expected.at("crc32").get<std::string>())
        return fmt::format("{} has CRC-32 {}, {} says {} (bytes changed after it was written)",
                           file, crc, kChecksums, expected.at("crc32").get<std::string>());
    }
  } catch (const std::exception& e) {
    return fmt::format("{} is unreadable: {}", kChecksums, e.what());
  }
  return "";
}

std::string CheckpointStore::verify(const std::string& checkpoint) {
  if (!fs::exists(fs::path(checkpoint) / "trainer.h5")) return "trainer.h5 is missing";
  return verify_checksums(checkpoint);
}

std::optional<std::string> newest_intact(
    const std::vector<std::string>& oldest_first,
    const std::function<std::string(const std::string&)>& verify) {
  std::vector<std::string> damaged;
  std::optional<std::string> chosen;
  for (auto it = oldest_first.rbegin(); it != oldest_first.rend() && !chosen; ++it) {
    const std::string problem = verify(*it);
    if (problem.empty()) {
      chosen = *it;
    } else {
      damaged.push_back(*it);
      log::warn("checkpoint {} is damaged: {}; trying the one before it", *it, problem);
    }
  }
  TURBINE_CHECK(chosen || damaged.empty(),
                "every checkpoint in {} is damaged (the warnings above say how)",
                fs::path(damaged.front()).parent_path().string());
  // Resuming before them: the damaged ones are kept for a look, under a name
  // that is no checkpoint's, so the steps they held can be written again.
  for (const std::string& path : damaged) {
    const fs::path from = path;
    const fs::path to = from.parent_path() / ("damaged-" + from.filename().string());
    std::error_code error;
    fs::remove_all(to, error);
    fs::rename(from, to, error);
    TURBINE_CHECK(!error, "cannot move the damaged checkpoint {} aside: {}", from.string(),
                  error.message());
    log::warn("moved the damaged checkpoint aside to {}", to.string());
  }
  return chosen;
}

std::optional<std::string> CheckpointStore::resume_point() {
  // Rank 0 decides; its refusal ("!" and why) reaches every rank.
  std::string chosen;
  if (comm_.rank() == 0) {
    const std::string problem =
        attempt([&] { chosen = newest_intact(complete(), verify).value_or(""); });
    if (!problem.empty()) chosen = fmt::format("!{}", without_location(problem));
  }
  chosen = comm_.broadcast_string(chosen, 0);
  TURBINE_CHECK(chosen.empty() || chosen[0] != '!', "{}", chosen.substr(1));
  if (chosen.empty()) return std::nullopt;
  return chosen;
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
