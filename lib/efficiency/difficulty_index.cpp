// Difficulty index: build, save atomically, load with identity checks, query.
#include "efficiency/difficulty_index.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "core/error.hpp"
#include "core/files.hpp"
#include "data/loader.hpp"
#include "tensor/hdf5.hpp"

namespace turbine::efficiency {

namespace {

std::string describe(const IndexIdentity& id) {
  return fmt::format(
      "{} at seq_len {} ({} windows) over {} training tokens in {} documents, "
      "tokenizer {}",
      metric_name(id.metric), id.seq_len, id.windows, id.train_tokens, id.train_docs,
      id.tokenizer_identity);
}

std::string remake(const IndexIdentity& id, const std::string& dataset_path) {
  return fmt::format("tools/analyze-data --metric {} --seq-len {} --force {}",
                     metric_name(id.metric), id.seq_len, dataset_path);
}

}  // namespace

IndexIdentity index_identity(const data::TokenDataset& dataset, Metric metric, int64_t seq_len) {
  IndexIdentity id;
  id.metric = metric;
  id.seq_len = seq_len;
  // The loader's own definition of the windows (and its error when there are none).
  id.windows =
      data::WindowLoader(dataset, data::Split::train, seq_len, 0, false).windows_per_epoch();
  id.tokenizer_identity = dataset.tokenizer_identity();
  id.train_tokens = dataset.num_tokens(data::Split::train);
  id.train_docs = dataset.num_docs(data::Split::train);
  return id;
}

std::string DifficultyIndex::path_for(const std::string& dataset_path, Metric metric,
                                      int64_t seq_len) {
  std::string stem = dataset_path;
  if (stem.ends_with(".h5")) stem.resize(stem.size() - 3);
  return fmt::format("{}.{}.seq{}.index.h5", stem, metric_name(metric), seq_len);
}

DifficultyIndex DifficultyIndex::from_values(std::span<const float> values,
                                             IndexIdentity identity) {
  TURBINE_CHECK(int64_t(values.size()) == identity.windows && !values.empty(),
                "difficulty index: {} values for {} windows", values.size(), identity.windows);
  DifficultyIndex index;
  index.identity_ = std::move(identity);
  index.values_.assign(values.begin(), values.end());
  index.sorted_windows_.resize(values.size());
  std::iota(index.sorted_windows_.begin(), index.sorted_windows_.end(), 0);
  std::stable_sort(index.sorted_windows_.begin(), index.sorted_windows_.end(),
                   [&](int64_t a, int64_t b) { return values[size_t(a)] < values[size_t(b)]; });
  index.sorted_values_.resize(values.size());
  for (size_t k = 0; k < values.size(); ++k) {
    index.sorted_values_[k] = values[size_t(index.sorted_windows_[k])];
  }
  return index;
}

void DifficultyIndex::save(const std::string& path) const {
  write_file_atomically(path, [&](const std::string& temporary) {
    H5File file(temporary, H5File::Mode::create);
    file.set_attribute("format", std::string(kIndexFormat));
    file.set_attribute("version", kIndexFormatVersion);
    file.set_attribute("metric", std::string(metric_name(identity_.metric)));
    file.set_attribute("seq_len", identity_.seq_len);
    file.set_attribute("windows", identity_.windows);
    file.set_attribute("tokenizer_identity", identity_.tokenizer_identity);
    file.set_attribute("train_tokens", identity_.train_tokens);
    file.set_attribute("train_docs", identity_.train_docs);
    file.set_attribute("value_min", min_value());
    file.set_attribute("value_median", median_value());
    file.set_attribute("value_max", max_value());
    const int64_t w = windows();
    file.write("values", Tensor::from_vector<float>({w}, values_));
    file.write("sorted_windows", Tensor::from_vector<int64_t>({w}, sorted_windows_));
    file.write("sorted_values", Tensor::from_vector<float>({w}, sorted_values_));
    file.close();
  });
}

DifficultyIndex DifficultyIndex::open_for(const data::TokenDataset& dataset, Metric metric,
                                          int64_t seq_len) {
  return load(path_for(dataset.path(), metric, seq_len), dataset, metric, seq_len);
}

DifficultyIndex DifficultyIndex::load(const std::string& path, const data::TokenDataset& dataset,
                                      Metric metric, int64_t seq_len) {
  const IndexIdentity expected = index_identity(dataset, metric, seq_len);
  TURBINE_CHECK(std::filesystem::exists(path),
                "no {} index for seq_len {} of '{}' ('{}' not found): create it with {} (under "
                "mpirun for speed: mpirun -np N build/apps/analyze-data ...)",
                metric_name(metric), seq_len, dataset.path(), path,
                remake(expected, dataset.path()));
  TURBINE_CHECK(H5File::is_hdf5(path), "'{}' is not an HDF5 file, so not a difficulty index: {}",
                path, remake(expected, dataset.path()));
  const H5File file(path, H5File::Mode::read);
  TURBINE_CHECK(file.has_attribute("format") && file.attribute_string("format") == kIndexFormat,
                "'{}' is not a difficulty index (format '{}'): re-create it with {}", path,
                file.has_attribute("format") ? file.attribute_string("format") : "",
                remake(expected, dataset.path()));
  const int64_t version = file.attribute_int("version");
  TURBINE_CHECK(version == kIndexFormatVersion,
                "difficulty index '{}' has format version {}, this build reads version {}: "
                "re-create it with {}",
                path, version, kIndexFormatVersion, remake(expected, dataset.path()));
  IndexIdentity found;
  found.metric = metric_from_name(file.attribute_string("metric"));
  found.seq_len = file.attribute_int("seq_len");
  found.windows = file.attribute_int("windows");
  found.tokenizer_identity = file.attribute_string("tokenizer_identity");
  found.train_tokens = file.attribute_int("train_tokens");
  found.train_docs = file.attribute_int("train_docs");
  TURBINE_CHECK(found == expected,
                "difficulty index '{}' is stale or belongs to other data: it indexes {}, but "
                "the run needs {} of '{}': re-create it with {}",
                path, describe(found), describe(expected), dataset.path(),
                remake(expected, dataset.path()));

  DifficultyIndex index;
  index.identity_ = found;
  const auto read = [&](const char* name, DType dtype, auto& out) {
    const Tensor t = file.read(name);
    TURBINE_CHECK(t.dtype() == dtype && t.ndim() == 1 && t.numel() == found.windows,
                  "difficulty index '{}': /{} is {}, expected {} values: the file is damaged; "
                  "re-create it with {}",
                  path, name, t.str(), found.windows, remake(expected, dataset.path()));
    using T = typename std::decay_t<decltype(out)>::value_type;
    out.assign(t.data<T>(), t.data<T>() + t.numel());
  };
  read("values", DType::f32, index.values_);
  read("sorted_windows", DType::i64, index.sorted_windows_);
  read("sorted_values", DType::f32, index.sorted_values_);
  return index;
}

int64_t DifficultyIndex::count_at_most(double difficulty) const {
  const auto end = std::upper_bound(sorted_values_.begin(), sorted_values_.end(), difficulty,
                                    [](double d, float v) { return d < double(v); });
  return end - sorted_values_.begin();
}

int64_t DifficultyIndex::count_at_percentile(int64_t percentile, int64_t max_percentile) const {
  TURBINE_CHECK(max_percentile > 0, "percentile difficulty needs max_difficulty > 0, got {}",
                max_percentile);
  const int64_t w = windows();
  if (percentile >= max_percentile) return w;
  if (percentile <= 0) return 0;
  // floor(w * p / max) without overflow.
  return (w / max_percentile) * percentile + (w % max_percentile) * percentile / max_percentile;
}

double DifficultyIndex::value_at_percentile(int64_t percentile, int64_t max_percentile) const {
  const int64_t count = count_at_percentile(percentile, max_percentile);
  return count > 0 ? double(sorted_values_[size_t(count - 1)]) : NAN;
}

}  // namespace turbine::efficiency
