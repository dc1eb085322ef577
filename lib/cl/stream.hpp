// The task streams cl-edge learns (issue 18), Avalanche's benchmarks on the
// data sets here:
//   split-fashion-mnist     Fashion-MNIST's 10 classes in tasks of
//                           classes_per_task (5 x 2), in label order or an
//                           order drawn by the seed; scenario "class"
//                           (class-incremental: one head over all classes)
//                           or "task" (task-incremental: each sample's
//                           logits masked to its task's classes, the
//                           multi-head setting).
//   permuted-fashion-mnist  every task all 10 classes under its own fixed
//                           pixel permutation (domain-incremental).
//   kjv-books               the KJV's books in canonical order, one a task,
//                           for a BLOOM language model (next-token loss and
//                           accuracy); a book's windows are split into
//                           training and held-out test windows.
//
// A sample is a stream id (task x train_count + its index in the training
// split) with a label (its class; for text its book) and a payload: the
// bytes that the memory keeps of it (the permuted image's pixels; the
// window's tokens). Batches are made from payloads, so replayed samples
// are trained on from what the memory holds, wherever it came from.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "data/images.hpp"
#include "fl/task.hpp"
#include "nn/bloom.hpp"
#include "nn/vision.hpp"
#include "tensor/tensor.hpp"

namespace turbine::cl {

struct StreamConfig {
  std::string benchmark = "split-fashion-mnist";  // or permuted-fashion-mnist, kjv-books
  std::string scenario = "class";                 // split: class | task; else domain
  std::string data_path;    // image data set (tools/prepare-data --images) or token data set
  std::string groups_path;  // kjv-books: one book a line, a line a document (data/kjv.books)
  int64_t tasks = 5;        // split: classes / classes_per_task; kjv-books: first books (0: all)
  int64_t classes_per_task = 2;     // split
  bool shuffle_classes = false;     // split: class order drawn by the seed; false: 0, 1, ...
  int64_t train_per_task = 0;       // training samples a task at most (a seeded subset); 0: all
  int64_t test_per_task = 0;        // test samples a task at most; 0: all
  double text_test_fraction = 0.1;  // kjv-books: windows of each book held out for its test
  int64_t seq_len = 64;             // kjv-books: tokens a window
  uint64_t seed = 1234;
};

// A batch ready for the model: logits come out (N, outputs()) with N =
// samples (images) or samples x seq_len (tokens), targets (N) i64, and an
// additive mask (N, outputs()) of 0 and -1e30 (task-incremental), else
// undefined.
struct Batch {
  Tensor inputs, targets, mask;
  int64_t samples = 0;
};

class Stream {
 public:
  // Loads the data; throws (naming the key to change) for a bad combination:
  // classes that tasks x classes_per_task do not cover exactly, a scenario
  // the benchmark does not have, more books than the groups file names.
  // text_model: kjv-books' BLOOM (its vocabulary is checked against the data).
  explicit Stream(const StreamConfig& config, const nn::BloomConfig& text_model = {});
  ~Stream();

  int64_t tasks() const { return int64_t(task_names_.size()); }
  const std::string& task_name(int64_t task) const { return task_names_.at(size_t(task)); }
  bool text() const { return text_ != nullptr; }
  int64_t outputs() const;          // classes, or the vocabulary
  int64_t payload_bytes() const;    // a sample's payload
  int64_t rows_per_sample() const;  // logit rows a sample gives (1, or seq_len)
  std::string describe() const;

  // The stream ids of a task's training samples, and its test samples
  // (indices into the test split).
  const std::vector<int64_t>& train_ids(int64_t task) const { return train_.at(size_t(task)); }
  const std::vector<int64_t>& test_rows(int64_t task) const { return test_.at(size_t(task)); }
  int64_t task_of(int64_t id) const;  // the task a stream id belongs to
  int32_t label(int64_t id) const;    // its class (text: its task)
  // The classes a task teaches (text: none): LwF's active units, the masks.
  const std::vector<int32_t>& task_classes(int64_t task) const;

  // A stream id's payload into `out` (payload_bytes() bytes).
  void payload(int64_t id, std::span<uint8_t> out) const;
  // The batch of `count` samples whose payloads lie one after the other in
  // `payloads`, with `labels` (the masks come from the labels' tasks).
  Batch batch(std::span<const uint8_t> payloads, std::span<const int32_t> labels,
              Device device) const;
  // Test samples `rows` of `task` (from test_rows(task)).
  Batch test_batch(int64_t task, std::span<const int64_t> rows, Device device) const;

  // kjv-books: the text task (model config, tokens).
  const fl::TextTask& text_task() const { return *text_; }
  const data::ImageSet& train_images() const { return train_set_; }

  // Training samples of the image set (the id stride).
  int64_t train_count() const { return train_count_; }

 private:
  // The tasks of each benchmark (the constructor's), from config_.
  void make_text_tasks(const nn::BloomConfig& text_model);
  void make_permuted_tasks();
  void make_split_tasks();
  void test_payload(int64_t task, int64_t row, std::span<uint8_t> out) const;
  Tensor mask_for(std::span<const int32_t> labels, Device device) const;

  StreamConfig config_;
  data::ImageSet train_set_, test_set_;
  std::unique_ptr<fl::TextTask> text_;
  int64_t train_count_ = 0;
  std::vector<std::string> task_names_;
  std::vector<std::vector<int64_t>> train_, test_;
  std::vector<std::vector<int32_t>> classes_;
  std::vector<int32_t> task_of_class_;
  std::vector<std::vector<int32_t>> permutations_;  // permuted: a task's pixel order
  std::vector<int64_t> text_test_windows_;          // kjv-books: held-out training windows
};

}  // namespace turbine::cl
