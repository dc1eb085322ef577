// What fedsim's clients learn (issue 17): a Task holds the data every client
// draws its samples from (read-only, shared by all the clients of a worker)
// and makes the model; a TaskModel is one client slot's model, which the
// ClientTrainer trains on sample ids and evaluates.
//   ImageTask  an image classifier (lib/nn/vision) on an image data set
//              (tools/prepare-data --images); samples are images, labels
//              their classes (the Dirichlet and shard partitions use them).
//   TextTask   a BLOOM language model on a token data set (tools/prepare-data);
//              samples are windows of seq_len + 1 tokens, each within one
//              document, grouped by a groups file (one group name a document
//              of the input, e.g. data/kjv.books: the KJV's book of each
//              chapter), which gives the natural partition: one client a group,
//              like LEAF's Shakespeare by speaker. Accuracy is next-token top-1.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "data/images.hpp"
#include "nn/bloom.hpp"
#include "nn/module.hpp"
#include "nn/vision.hpp"
#include "train/classify.hpp"

namespace turbine::fl {

class TaskModel {
 public:
  virtual ~TaskModel() = default;
  virtual nn::ParameterList parameters() = 0;
  // Weights that travel with the parameters but are not trained by
  // gradients (BatchNorm's running statistics).
  virtual nn::ParameterList buffers() { return {}; }
  // The mean loss over training samples `rows`, in training mode, recorded
  // for backward; `seed` seeds dropout.
  virtual Tensor train_loss(std::span<const int64_t> rows, uint64_t seed) = 0;
  // Sums over samples `rows` of the training split or the test split, in
  // eval mode, without gradients: loss x count, correct predictions, count
  // (images, or predicted tokens).
  virtual train::EvalSums evaluate(bool test_split, std::span<const int64_t> rows,
                                   int64_t batch) = 0;
};

class Task {
 public:
  virtual ~Task() = default;
  virtual std::unique_ptr<TaskModel> make_model(Device device) const = 0;
  virtual int64_t train_count() const = 0;
  virtual int64_t test_count() const = 0;
  // Class labels of the training samples (empty: the task has none, so
  // only the iid and natural partitions apply) and their class count.
  virtual std::span<const int32_t> labels() const { return {}; }
  virtual int32_t num_classes() const { return 0; }
  // The natural partition (one part a group) and its group names; empty if
  // the data has no groups.
  virtual std::vector<std::vector<int64_t>> natural_partition() const { return {}; }
  virtual std::vector<std::string> group_names() const { return {}; }
  virtual std::string describe() const = 0;
};

class ImageTask : public Task {
 public:
  ImageTask(data::ImageSet train, data::ImageSet test, nn::VisionConfig model);
  std::unique_ptr<TaskModel> make_model(Device device) const override;
  int64_t train_count() const override { return train_.count; }
  int64_t test_count() const override { return test_.count; }
  std::span<const int32_t> labels() const override { return train_.labels; }
  int32_t num_classes() const override { return train_.num_classes(); }
  std::string describe() const override;
  const data::ImageSet& train() const { return train_; }
  const data::ImageSet& test() const { return test_; }
  const nn::VisionConfig& model() const { return model_; }

 private:
  data::ImageSet train_, test_;
  nn::VisionConfig model_;
};

class TextTask : public Task {
 public:
  // groups_path: one group name a line, a line an input document; "" for none.
  TextTask(const std::string& data_path, const std::string& groups_path, int64_t seq_len,
           nn::BloomConfig model, uint64_t seed);
  std::unique_ptr<TaskModel> make_model(Device device) const override;
  int64_t train_count() const override { return int64_t(train_windows_.size()); }
  int64_t test_count() const override { return int64_t(test_windows_.size()); }
  std::vector<std::vector<int64_t>> natural_partition() const override;
  std::vector<std::string> group_names() const override { return group_names_; }
  std::string describe() const override;
  // The batch of windows `rows`: ids (B, T) and next-token targets (B, T), i64.
  void batch(bool test_split, std::span<const int64_t> rows, Device device, Tensor* ids,
             Tensor* targets) const;
  const nn::BloomConfig& model() const { return model_; }
  int64_t seq_len() const { return seq_len_; }
  // The seq_len + 1 tokens of window `row` of a split.
  std::span<const int32_t> window(bool test_split, int64_t row) const;

 private:
  int64_t seq_len_;
  nn::BloomConfig model_;
  std::vector<int32_t> train_tokens_, test_tokens_;
  std::vector<int64_t> train_windows_, test_windows_;  // first token of each
  std::vector<int32_t> window_group_;                  // of each training window; -1: none
  std::vector<std::string> group_names_;
  std::string data_path_;
  uint64_t seed_;
};

}  // namespace turbine::fl
