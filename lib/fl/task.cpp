// The federated tasks of task.hpp.
#include "fl/task.hpp"

#include <fstream>
#include <map>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "data/token_dataset.hpp"

namespace turbine::fl {

namespace {

class ImageModel : public TaskModel {
 public:
  ImageModel(const ImageTask& task, Device device)
      : task_(task), model_(task.model(), device), device_(device) {}
  nn::ParameterList parameters() override { return model_.parameters(); }
  nn::ParameterList buffers() override { return model_.buffers(); }
  Tensor train_loss(std::span<const int64_t> rows, uint64_t seed) override {
    Tensor images, labels;
    data::image_batch(task_.train(), rows, device_, &images, &labels);
    return ag::cross_entropy(model_.forward(images, true, seed), labels);
  }
  train::EvalSums evaluate(bool test_split, std::span<const int64_t> rows, int64_t batch) override {
    return train::evaluate_images(model_, test_split ? task_.test() : task_.train(), rows, batch,
                                  device_);
  }

 private:
  const ImageTask& task_;
  nn::ImageClassifier model_;
  Device device_;
};

class TextModel : public TaskModel {
 public:
  TextModel(const TextTask& task, uint64_t seed, Device device)
      : task_(task), model_(task.model(), seed, device), device_(device) {}
  nn::ParameterList parameters() override { return model_.parameters(); }
  Tensor train_loss(std::span<const int64_t> rows, uint64_t seed) override {
    Tensor ids, targets;
    task_.batch(false, rows, device_, &ids, &targets);
    model_.set_training(true);
    model_.set_dropout_step(seed);
    return model_.loss(ids, targets);
  }
  train::EvalSums evaluate(bool test_split, std::span<const int64_t> rows, int64_t batch) override {
    autograd::NoGradGuard no_grad;
    model_.set_training(false);
    train::EvalSums sums;
    // The logits of a window are seq_len x vocab floats: a few windows at a time.
    const int64_t step = std::max<int64_t>(1, std::min<int64_t>(batch, 8));
    for (size_t first = 0; first < rows.size(); first += size_t(step)) {
      const auto some = rows.subspan(first, std::min(rows.size() - first, size_t(step)));
      Tensor ids, targets;
      task_.batch(test_split, some, device_, &ids, &targets);
      const Tensor logits = model_.logits(ids);
      const int64_t n = ids.numel(), vocab = logits.dim(2);
      const Tensor flat = logits.contiguous().view({n, vocab});
      const Tensor truth = targets.view({n});
      sums.loss += ag::cross_entropy(flat, truth).to(Device::cpu()).item() * double(n);
      sums.correct += double(train::count_correct(flat, truth));
      sums.count += double(n);
    }
    model_.set_training(true);
    return sums;
  }

 private:
  const TextTask& task_;
  nn::Bloom model_;
  Device device_;
};

}  // namespace

ImageTask::ImageTask(data::ImageSet train, data::ImageSet test, nn::VisionConfig model)
    : train_(std::move(train)), test_(std::move(test)), model_(std::move(model)) {}

std::unique_ptr<TaskModel> ImageTask::make_model(Device device) const {
  return std::make_unique<ImageModel>(*this, device);
}

std::string ImageTask::describe() const {
  return fmt::format("{} image classifier, {} training and {} test images of {} classes",
                     model_.arch, train_.count, test_.count, train_.num_classes());
}

TextTask::TextTask(const std::string& data_path, const std::string& groups_path, int64_t seq_len,
                   nn::BloomConfig model, uint64_t seed)
    : seq_len_(seq_len), model_(model), data_path_(data_path), seed_(seed) {
  TURBINE_CHECK(seq_len >= 1, "data.seq_len must be positive, got {}", seq_len);
  const data::TokenDataset set = data::TokenDataset::open(data_path);
  TURBINE_CHECK(model_.vocab_size >= set.vocab_size(),
                "model.vocab_size {} is smaller than {}'s vocabulary of {}", model_.vocab_size,
                data_path, set.vocab_size());
  // Group names by input document, numbered in order of first appearance.
  std::vector<int32_t> group_of_input;
  if (!groups_path.empty()) {
    std::ifstream in(groups_path);
    TURBINE_CHECK(in,
                  "{}: cannot open the groups file (one group name a line, a line an input "
                  "document; tools/get-kjv writes data/kjv.books)",
                  groups_path);
    std::map<std::string, int32_t> index;
    int64_t line_number = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_number;
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      TURBINE_CHECK(!line.empty(), "{}:{}: an empty group name", groups_path, line_number);
      const auto [it, added] = index.emplace(line, int32_t(group_names_.size()));
      if (added) group_names_.push_back(line);
      group_of_input.push_back(it->second);
    }
    TURBINE_CHECK(!group_of_input.empty(), "{}: no groups", groups_path);
  }
  for (data::Split split : {data::Split::train, data::Split::valid}) {
    const bool train = split == data::Split::train;
    std::vector<int32_t>& tokens = train ? train_tokens_ : test_tokens_;
    std::vector<int64_t>& windows = train ? train_windows_ : test_windows_;
    tokens.resize(size_t(set.num_tokens(split)));
    set.read(split, 0, set.num_tokens(split), tokens.data());
    const auto offsets = set.doc_offsets(split);
    const auto ids = set.doc_ids(split);
    if (train && !group_of_input.empty())
      TURBINE_CHECK(ids.size() + 1 == offsets.size(),
                    "{} does not record which input document each of its documents is (written "
                    "before the format had doc_ids): re-create it with tools/prepare-data to "
                    "group its documents by {}",
                    data_path, groups_path);
    for (size_t d = 0; d + 1 < offsets.size(); ++d) {
      int32_t group = -1;
      if (train && !group_of_input.empty()) {
        TURBINE_CHECK(ids[d] >= 0 && ids[d] < int64_t(group_of_input.size()),
                      "{} names {} documents, but document {} of {} is input document {}: was "
                      "it written for this data set?",
                      groups_path, group_of_input.size(), d, data_path, ids[d]);
        group = group_of_input[size_t(ids[d])];
      }
      for (int64_t s = offsets[d]; s + seq_len + 1 <= offsets[d + 1]; s += seq_len) {
        windows.push_back(s);
        if (train) window_group_.push_back(group);
      }
    }
  }
  TURBINE_CHECK(!train_windows_.empty(),
                "{}: no training document holds data.seq_len {} + 1 tokens: use a shorter "
                "data.seq_len",
                data_path, seq_len);
  TURBINE_CHECK(!test_windows_.empty(),
                "{}: no validation document holds data.seq_len {} + 1 tokens: use a shorter "
                "data.seq_len, or re-create the data set with a larger --valid-fraction",
                data_path, seq_len);
}

std::unique_ptr<TaskModel> TextTask::make_model(Device device) const {
  return std::make_unique<TextModel>(*this, seed_, device);
}

std::vector<std::vector<int64_t>> TextTask::natural_partition() const {
  if (group_names_.empty()) return {};
  std::vector<std::vector<int64_t>> parts(group_names_.size());
  for (size_t w = 0; w < window_group_.size(); ++w)
    parts[size_t(window_group_[w])].push_back(int64_t(w));
  return parts;
}

std::string TextTask::describe() const {
  return fmt::format(
      "BLOOM language model (hidden {}, {} layers, {} heads, vocabulary {}) on {}: {} training "
      "and {} test windows of {} tokens{}",
      model_.hidden_size, model_.n_layer, model_.n_head, model_.vocab_size, data_path_,
      train_windows_.size(), test_windows_.size(), seq_len_,
      group_names_.empty() ? "" : fmt::format(" in {} groups", group_names_.size()));
}

std::span<const int32_t> TextTask::window(bool test_split, int64_t row) const {
  const std::vector<int64_t>& windows = test_split ? test_windows_ : train_windows_;
  TURBINE_CHECK(row >= 0 && row < int64_t(windows.size()), "text task: window {} of {}", row,
                windows.size());
  return {(test_split ? test_tokens_ : train_tokens_).data() + windows[size_t(row)],
          size_t(seq_len_ + 1)};
}

void TextTask::batch(bool test_split, std::span<const int64_t> rows, Device device, Tensor* ids,
                     Tensor* targets) const {
  const std::vector<int32_t>& tokens = test_split ? test_tokens_ : train_tokens_;
  const std::vector<int64_t>& windows = test_split ? test_windows_ : train_windows_;
  const auto b = int64_t(rows.size()), t = seq_len_;
  std::vector<int64_t> in(size_t(b * t)), out(size_t(b * t));
  for (int64_t r = 0; r < b; ++r) {
    const int64_t w = rows[size_t(r)];
    TURBINE_CHECK(w >= 0 && w < int64_t(windows.size()), "text task: window {} of {}", w,
                  windows.size());
    const int32_t* src = tokens.data() + windows[size_t(w)];
    for (int64_t i = 0; i < t; ++i) {
      in[size_t(r * t + i)] = src[i];
      out[size_t(r * t + i)] = src[i + 1];
    }
  }
  *ids = Tensor::from_vector<int64_t>({b, t}, in).to(device);
  *targets = Tensor::from_vector<int64_t>({b, t}, out).to(device);
}

}  // namespace turbine::fl
