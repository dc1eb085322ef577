// The task streams of stream.hpp.
#include "cl/stream.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace turbine::cl {

namespace {

// Philox streams of the stream's draws (distinct from the memory's).
constexpr uint64_t kClassOrderStream = 0x5e01, kSubsetStream = 0x5e02, kPermutationStream = 0x5e03,
                   kTextSplitStream = 0x5e04;

// At most `limit` of `values` (0: all), a seeded subset kept in order.
std::vector<int64_t> subset(const std::vector<int64_t>& values, int64_t limit, uint64_t seed,
                            uint64_t key) {
  if (limit <= 0) return values;
  return philox_subset(values, limit, seed, kSubsetStream, key);
}

}  // namespace

Stream::Stream(const StreamConfig& config, const nn::BloomConfig& text_model) : config_(config) {
  const StreamConfig& c = config_;
  if (c.benchmark == "kjv-books") {
    make_text_tasks(text_model);
    return;
  }
  TURBINE_CHECK(c.benchmark == "split-fashion-mnist" || c.benchmark == "permuted-fashion-mnist",
                "stream.benchmark {}: one of split-fashion-mnist, permuted-fashion-mnist, "
                "kjv-books",
                c.benchmark);
  train_set_ = data::load_image_split(c.data_path, "train");
  test_set_ = data::load_image_split(c.data_path, "test");
  train_count_ = train_set_.count;
  task_of_class_.assign(size_t(train_set_.num_classes()), 0);
  if (c.benchmark == "permuted-fashion-mnist")
    make_permuted_tasks();
  else
    make_split_tasks();
}

// The KJV's books in order, each a task: its token windows shuffled, a
// held-out part for testing, the rest for training.
void Stream::make_text_tasks(const nn::BloomConfig& text_model) {
  const StreamConfig& c = config_;
  TURBINE_CHECK(c.scenario == "domain",
                "stream.scenario {}: the kjv-books stream has one output space (the "
                "vocabulary), so it is domain-incremental: set stream.scenario: domain",
                c.scenario);
  TURBINE_CHECK(!c.groups_path.empty(),
                "stream.groups: kjv-books needs the file naming each chapter's book "
                "(data/kjv.books, written by tools/get-kjv)");
  text_ = std::make_unique<fl::TextTask>(c.data_path, c.groups_path, c.seq_len, text_model, c.seed);
  const auto parts = text_->natural_partition();
  const auto names = text_->group_names();
  TURBINE_CHECK(c.tasks <= int64_t(parts.size()), "stream.tasks {}: {} names only {} books",
                c.tasks, c.groups_path, parts.size());
  TURBINE_CHECK(c.text_test_fraction > 0 && c.text_test_fraction < 1,
                "stream.text_test_fraction {} must be in (0, 1)", c.text_test_fraction);
  const int64_t tasks = c.tasks > 0 ? c.tasks : int64_t(parts.size());
  train_count_ = text_->train_count();
  for (int64_t t = 0; t < tasks; ++t) {
    std::vector<int64_t> windows = parts[size_t(t)];
    philox_shuffle(windows, c.seed, kTextSplitStream, uint64_t(t));
    const auto held =
        std::max<int64_t>(1, int64_t(std::llround(c.text_test_fraction * double(windows.size()))));
    TURBINE_CHECK(int64_t(windows.size()) > held,
                  "{}: book {} ({}) has {} windows of stream.seq_len {} + 1 tokens, too few "
                  "to hold out a test part: use a shorter seq_len or fewer tasks",
                  c.data_path, t, names[size_t(t)], windows.size(), c.seq_len);
    std::vector<int64_t> test(windows.begin(), windows.begin() + held);
    std::vector<int64_t> train(windows.begin() + held, windows.end());
    std::sort(test.begin(), test.end());
    std::sort(train.begin(), train.end());
    train = subset(std::move(train), c.train_per_task, c.seed, uint64_t(t));
    test = subset(std::move(test), c.test_per_task, c.seed, 1000 + uint64_t(t));
    std::vector<int64_t> ids;
    for (const int64_t w : train) ids.push_back(t * train_count_ + w);
    train_.push_back(std::move(ids));
    std::vector<int64_t> rows;
    for (const int64_t w : test) {
      rows.push_back(int64_t(text_test_windows_.size()));
      text_test_windows_.push_back(w);
    }
    test_.push_back(std::move(rows));
    classes_.emplace_back();
    task_names_.push_back(names[size_t(t)]);
  }
}

// Fashion-MNIST with a fixed pixel permutation a task, every class in each.
void Stream::make_permuted_tasks() {
  const StreamConfig& c = config_;
  const auto classes = int32_t(train_set_.num_classes());
  TURBINE_CHECK(c.scenario == "domain",
                "stream.scenario {}: every permuted task has all the classes "
                "(domain-incremental): set stream.scenario: domain",
                c.scenario);
  TURBINE_CHECK(c.tasks >= 1, "stream.tasks {} must be at least 1", c.tasks);
  const int64_t pixels = train_set_.image_elements();
  std::vector<int32_t> all(static_cast<size_t>(classes));
  std::iota(all.begin(), all.end(), 0);
  std::vector<int64_t> train_all(size_t(train_set_.count)), test_all(size_t(test_set_.count));
  std::iota(train_all.begin(), train_all.end(), 0);
  std::iota(test_all.begin(), test_all.end(), 0);
  for (int64_t t = 0; t < c.tasks; ++t) {
    std::vector<int32_t> order(static_cast<size_t>(pixels));
    std::iota(order.begin(), order.end(), 0);
    philox_shuffle(order, c.seed, kPermutationStream, uint64_t(t));
    permutations_.push_back(std::move(order));
    std::vector<int64_t> ids = subset(train_all, c.train_per_task, c.seed, uint64_t(t));
    for (int64_t& id : ids) id += t * train_count_;
    train_.push_back(std::move(ids));
    test_.push_back(subset(test_all, c.test_per_task, c.seed, 1000 + uint64_t(t)));
    classes_.push_back(all);
    task_names_.push_back(fmt::format("permutation {}", t));
  }
}

// Fashion-MNIST's classes split into tasks of classes_per_task (in order,
// or shuffled by the seed).
void Stream::make_split_tasks() {
  const StreamConfig& c = config_;
  const auto classes = int32_t(train_set_.num_classes());
  TURBINE_CHECK(c.scenario == "class" || c.scenario == "task",
                "stream.scenario {}: split-fashion-mnist is class-incremental (class) or "
                "task-incremental (task)",
                c.scenario);
  TURBINE_CHECK(c.classes_per_task >= 1 && c.tasks >= 1 && c.tasks * c.classes_per_task == classes,
                "stream.tasks {} x stream.classes_per_task {} must be the data set's {} classes "
                "({}): choose a classes_per_task that divides {}",
                c.tasks, c.classes_per_task, classes, c.data_path, classes);
  std::vector<int32_t> order(static_cast<size_t>(classes));
  std::iota(order.begin(), order.end(), 0);
  if (c.shuffle_classes) philox_shuffle(order, c.seed, kClassOrderStream, 0);
  std::vector<std::vector<int64_t>> train_of(static_cast<size_t>(classes)),
      test_of(static_cast<size_t>(classes));
  for (int64_t i = 0; i < train_set_.count; ++i)
    train_of[size_t(train_set_.labels[size_t(i)])].push_back(i);
  for (int64_t i = 0; i < test_set_.count; ++i)
    test_of[size_t(test_set_.labels[size_t(i)])].push_back(i);
  for (int64_t t = 0; t < c.tasks; ++t) {
    std::vector<int32_t> mine(order.begin() + t * c.classes_per_task,
                              order.begin() + (t + 1) * c.classes_per_task);
    std::vector<int64_t> train, test;
    std::string name;
    for (const int32_t k : mine) {
      task_of_class_[size_t(k)] = int32_t(t);
      train.insert(train.end(), train_of[size_t(k)].begin(), train_of[size_t(k)].end());
      test.insert(test.end(), test_of[size_t(k)].begin(), test_of[size_t(k)].end());
      name += (name.empty() ? "" : "/") + train_set_.class_names[size_t(k)];
    }
    std::sort(train.begin(), train.end());
    std::sort(test.begin(), test.end());
    train = subset(std::move(train), c.train_per_task, c.seed, uint64_t(t));
    for (int64_t& id : train) id += t * train_count_;
    train_.push_back(std::move(train));
    test_.push_back(subset(std::move(test), c.test_per_task, c.seed, 1000 + uint64_t(t)));
    std::sort(mine.begin(), mine.end());
    classes_.push_back(std::move(mine));
    task_names_.push_back(name);
  }
}

Stream::~Stream() = default;

int64_t Stream::outputs() const {
  return text_ ? text_->model().vocab_size : train_set_.num_classes();
}

int64_t Stream::payload_bytes() const {
  return text_ ? (config_.seq_len + 1) * int64_t(sizeof(int32_t)) : train_set_.image_elements();
}

int64_t Stream::rows_per_sample() const {
  return text_ ? config_.seq_len : 1;
}

std::string Stream::describe() const {
  int64_t train = 0, test = 0;
  for (int64_t t = 0; t < tasks(); ++t) {
    train += int64_t(train_[size_t(t)].size());
    test += int64_t(test_[size_t(t)].size());
  }
  return fmt::format("{} ({}-incremental): {} tasks, {} training and {} test samples",
                     config_.benchmark, config_.scenario, tasks(), train, test);
}

int64_t Stream::task_of(int64_t id) const {
  TURBINE_CHECK(id >= 0 && id < tasks() * train_count_, "stream: id {} of {} tasks x {}", id,
                tasks(), train_count_);
  return id / train_count_;
}

int32_t Stream::label(int64_t id) const {
  const int64_t task = task_of(id);
  if (text_) return int32_t(task);
  return train_set_.labels[size_t(id % train_count_)];
}

const std::vector<int32_t>& Stream::task_classes(int64_t task) const {
  return classes_.at(size_t(task));
}

void Stream::payload(int64_t id, std::span<uint8_t> out) const {
  TURBINE_CHECK(int64_t(out.size()) == payload_bytes(), "stream: a payload of {} bytes, not {}",
                out.size(), payload_bytes());
  const int64_t task = task_of(id), index = id % train_count_;
  if (text_) {
    const auto tokens = text_->window(false, index);
    std::memcpy(out.data(), tokens.data(), out.size());
    return;
  }
  const uint8_t* image = train_set_.pixels.data() + index * train_set_.image_elements();
  if (permutations_.empty()) {
    std::memcpy(out.data(), image, out.size());
    return;
  }
  const std::vector<int32_t>& order = permutations_[size_t(task)];
  for (size_t k = 0; k < out.size(); ++k) out[k] = image[order[k]];
}

void Stream::test_payload(int64_t task, int64_t row, std::span<uint8_t> out) const {
  if (text_) {
    const auto tokens = text_->window(false, text_test_windows_.at(size_t(row)));
    std::memcpy(out.data(), tokens.data(), out.size());
    return;
  }
  TURBINE_CHECK(row >= 0 && row < test_set_.count, "stream: test image {} of {}", row,
                test_set_.count);
  const uint8_t* image = test_set_.pixels.data() + row * test_set_.image_elements();
  if (permutations_.empty()) {
    std::memcpy(out.data(), image, out.size());
    return;
  }
  const std::vector<int32_t>& order = permutations_[size_t(task)];
  for (size_t k = 0; k < out.size(); ++k) out[k] = image[order[k]];
}

Tensor Stream::mask_for(std::span<const int32_t> labels, Device device) const {
  if (config_.scenario != "task") return {};
  const int64_t n = int64_t(labels.size()), c = outputs();
  std::vector<float> mask(size_t(n * c), -1e30f);
  for (int64_t r = 0; r < n; ++r)
    for (const int32_t k : classes_[size_t(task_of_class_.at(size_t(labels[size_t(r)])))])
      mask[size_t(r * c + k)] = 0.0f;
  return Tensor::from_vector<float>({n, c}, mask, device);
}

Batch Stream::batch(std::span<const uint8_t> payloads, std::span<const int32_t> labels,
                    Device device) const {
  const int64_t bytes = payload_bytes(), n = int64_t(labels.size());
  TURBINE_CHECK(int64_t(payloads.size()) == n * bytes, "stream: {} payload bytes for {} samples",
                payloads.size(), n);
  Batch b;
  b.samples = n;
  if (text_) {
    const int64_t t = config_.seq_len;
    std::vector<int64_t> in(size_t(n * t)), out(size_t(n * t));
    for (int64_t r = 0; r < n; ++r) {
      std::vector<int32_t> tokens(size_t(t + 1));
      std::memcpy(tokens.data(), payloads.data() + r * bytes, size_t(bytes));
      for (int64_t i = 0; i < t; ++i) {
        in[size_t(r * t + i)] = tokens[size_t(i)];
        out[size_t(r * t + i)] = tokens[size_t(i + 1)];
      }
    }
    b.inputs = Tensor::from_vector<int64_t>({n, t}, in, device);
    b.targets = Tensor::from_vector<int64_t>({n * t}, out, device);
    return b;
  }
  const data::ImageSet& set = train_set_;
  std::vector<std::array<float, 256>> normalized(size_t(set.channels));
  for (int64_t ch = 0; ch < set.channels; ++ch) {
    const double std = set.std[size_t(ch)] > 0 ? set.std[size_t(ch)] : 1.0;
    for (int v = 0; v < 256; ++v)
      normalized[size_t(ch)][size_t(v)] = float((v / 255.0 - set.mean[size_t(ch)]) / std);
  }
  const int64_t plane = set.height * set.width;
  std::vector<float> pixels(size_t(n * bytes));
  for (int64_t k = 0; k < n * bytes; ++k)
    pixels[size_t(k)] = normalized[size_t((k % bytes) / plane)][payloads[size_t(k)]];
  std::vector<int64_t> targets(labels.begin(), labels.end());
  b.inputs = Tensor::from_vector<float>({n, set.channels, set.height, set.width}, pixels, device);
  b.targets = Tensor::from_vector<int64_t>({n}, targets, device);
  b.mask = mask_for(labels, device);
  return b;
}

Batch Stream::test_batch(int64_t task, std::span<const int64_t> rows, Device device) const {
  const int64_t bytes = payload_bytes();
  std::vector<uint8_t> payloads(rows.size() * size_t(bytes));
  std::vector<int32_t> labels(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    test_payload(task, rows[r],
                 std::span<uint8_t>(payloads.data() + r * size_t(bytes), size_t(bytes)));
    labels[r] = text_ ? int32_t(task) : test_set_.labels[size_t(rows[r])];
  }
  return batch(payloads, labels, device);
}

}  // namespace turbine::cl
