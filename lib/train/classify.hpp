// Image classification by the training loop: an nn::ImageClassifier (MLP,
// CNN, ResNet) on an HDF5 image data set (tools/prepare-data --images), data
// parallel over ranks, with the shared config keys (batch sizes, optimizer,
// scheduler, precision, ZeRO, checkpoints, resume, metrics, stop signals).
// fedsim's centralized baseline (`fedsim centralized`) and the image models'
// sanity run on Fashion-MNIST; BatchNorm's running statistics travel in
// checkpoints as a part of their own.
#pragma once

#include <span>
#include <string>

#include "data/images.hpp"
#include "io/config.hpp"
#include "nn/vision.hpp"
#include "train/engine.hpp"
#include "train/job.hpp"
#include "train/loop.hpp"
#include "train/schema.hpp"

namespace turbine::train {

struct ClassifyOptions {
  RunOptions run;
  BatchOptions batch;
  EngineOptions engine;
  ScheduleOptions schedule;
  nn::VisionConfig model;
  std::string data_path;
  int64_t eval_batches = 0;  // micro-batches of the test split; 0: all of it
  std::string resolved_config_yaml;
};

// model.* keys of the image classifiers (shared with fedsim and cl-edge).
// model.* of the image classifiers; `other_archs` are more model.arch values
// the app handles itself (fedsim's bloom).
void declare_vision_model(io::ConfigSchema& s, const std::vector<std::string>& other_archs = {});
// The model's configuration; image shape and classes come from the data set.
nn::VisionConfig vision_model_from(const io::Config& c, const std::string& data_path);

// Correct predictions (each row's argmax of logits (N, classes)) among labels (N).
int64_t count_correct(const Tensor& logits, const Tensor& labels);

// Images [begin, end) of `set` through the model in eval mode, `batch` at a
// time, without gradients: the sums of cross entropy, correct predictions
// and images (this rank's part of an evaluation; fedsim's server whole).
struct EvalSums {
  double loss = 0, correct = 0, count = 0;
};
EvalSums evaluate_images(nn::ImageClassifier& model, const data::ImageSet& set, int64_t begin,
                         int64_t end, int64_t batch, Device device);
// The same over the images `samples` of `set` (a federated client's own).
EvalSums evaluate_images(nn::ImageClassifier& model, const data::ImageSet& set,
                         std::span<const int64_t> samples, int64_t batch, Device device);

io::ConfigSchema classify_schema(const std::string& app);
ClassifyOptions classify_options(const io::Config& c, int world_size);

struct ClassifyResult {
  LoopResult loop;
  double test_accuracy = NAN;  // the last evaluation's, on the whole test split (or eval.batches)
};
ClassifyResult classify(const ClassifyOptions& options, Job& job);
// The closing lines; the exit status (kExitStoppedResumable after a stop).
int report_classify(const ClassifyOptions& options, const ClassifyResult& result);
// A trained classifier as an image encoder (VisualChat's): its model
// configuration, the pixel normalization it was trained with and its class
// names, stored in every classify checkpoint as encoder.json.
struct ImageEncoderSpec {
  nn::VisionConfig model;
  std::vector<double> mean, std;  // per channel, on the 0..1 scale
  std::vector<std::string> class_names;
};
std::string encoder_spec_json(const ImageEncoderSpec& spec);
// From a classify checkpoint (`rlhf encoder`, `fedsim centralized`);
// errors name the checkpoint.
ImageEncoderSpec read_encoder_spec(const std::string& checkpoint);

// An app's whole classification mode (fedsim centralized, rlhf encoder):
// the config through classify_schema(app), --dry-run, the run and its
// report; the exit status.
int run_classify_app(Job& job, const JobFlags& flags, const std::string& app);

}  // namespace turbine::train
