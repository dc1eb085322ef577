// The image classification job of classify.hpp.
#include "train/classify.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/signals.hpp"
#include "data/images.hpp"
#include "data/loader.hpp"

namespace turbine::train {

void declare_vision_model(io::ConfigSchema& s, const std::vector<std::string>& other_archs) {
  std::vector<io::ConfigValue> archs = {std::string("mlp"), std::string("cnn"),
                                        std::string("resnet"), std::string("vit")};
  for (const std::string& arch : other_archs) archs.push_back(arch);
  s.string("model.arch", "cnn",
           other_archs.empty()
               ? "image classifier: mlp, cnn (LeNet-style), resnet (CIFAR-style) or vit"
               : fmt::format("image classifier: mlp, cnn (LeNet-style), resnet (CIFAR-style) or "
                             "vit; "
                             "or {}",
                             fmt::join(other_archs, ", ")))
      .one_of(archs);
  s.integers("model.hidden", {128},
             "widths of the hidden fully connected layers (mlp; cnn: after the convolutions)");
  s.integers("model.conv_channels", {32, 64},
             "cnn: output channels of its 5x5 convolutions, each with ReLU and 2x2 max pooling");
  s.integer("model.depth", 8, "resnet: 6n + 2 layers (8, 14, 20, ...)").at_least(8);
  s.integer("model.width_base", 16, "resnet: channels of the first stage (then 2x, 4x)")
      .at_least(1);
  s.string("model.norm", "batch", "resnet: batch (BatchNorm2d) or group (GroupNorm)")
      .one_of({std::string("batch"), std::string("group")});
  s.integer("model.norm_groups", 8, "resnet with group norm: groups per layer").at_least(1);
  s.number("model.dropout", 0.0, "mlp, cnn: dropout after each hidden fully connected layer")
      .at_least(0)
      .at_most(0.99);
  s.integer("model.patch_size", 7, "vit: pixels of a square patch (divides the image's sides)")
      .at_least(1);
  s.integer("model.embed_dim", 64, "vit: width of a patch's token").at_least(1);
  s.integer("model.heads", 4, "vit: attention heads (divides model.embed_dim)").at_least(1);
  s.integer("model.layers", 2, "vit: transformer blocks").at_least(1);
}

nn::VisionConfig vision_model_from(const io::Config& c, const std::string& data_path) {
  nn::VisionConfig m;
  m.arch = c.get<std::string>("model.arch");
  m.hidden = c.get<std::vector<int64_t>>("model.hidden");
  m.conv_channels = c.get<std::vector<int64_t>>("model.conv_channels");
  m.depth = c.get<int64_t>("model.depth");
  m.width_base = c.get<int64_t>("model.width_base");
  m.norm = c.get<std::string>("model.norm");
  m.norm_groups = c.get<int64_t>("model.norm_groups");
  m.dropout = float(c.get<double>("model.dropout"));
  m.patch_size = c.get<int64_t>("model.patch_size");
  m.embed_dim = c.get<int64_t>("model.embed_dim");
  m.heads = c.get<int64_t>("model.heads");
  m.layers = c.get<int64_t>("model.layers");
  const data::ImageSet test = data::load_image_split(data_path, "test");
  m.channels = test.channels;
  m.height = test.height;
  m.width = test.width;
  m.num_classes = test.num_classes();
  try {
    m.validate();
  } catch (const Error& e) {
    c.fail("model.arch", e.what());
  }
  return m;
}

int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  const auto v = logits.to(Device::cpu()).contiguous().to_vector<float>();
  const auto truth = labels.to(Device::cpu()).to(DType::i64).to_vector<int64_t>();
  const int64_t classes = logits.dim(1);
  int64_t correct = 0;
  for (size_t r = 0; r < truth.size(); ++r) {
    const float* row = v.data() + r * size_t(classes);
    correct += std::max_element(row, row + classes) - row == truth[r];
  }
  return correct;
}

EvalSums evaluate_images(nn::ImageClassifier& model, const data::ImageSet& set, int64_t begin,
                         int64_t end, int64_t batch, Device device) {
  std::vector<int64_t> rows;
  for (int64_t i = begin; i < end; ++i) rows.push_back(i);
  return evaluate_images(model, set, rows, batch, device);
}

EvalSums evaluate_images(nn::ImageClassifier& model, const data::ImageSet& set,
                         std::span<const int64_t> samples, int64_t batch, Device device) {
  autograd::NoGradGuard no_grad;
  EvalSums sums;
  const auto n = int64_t(samples.size());
  for (int64_t first = 0; first < n; first += batch) {
    const std::span<const int64_t> rows =
        samples.subspan(size_t(first), size_t(std::min(batch, n - first)));
    Tensor images, labels;
    data::image_batch(set, rows, device, &images, &labels);
    const Tensor logits = model.forward(images, false);
    sums.loss += ag::cross_entropy(logits, labels).to(Device::cpu()).item() * double(rows.size());
    sums.correct += double(count_correct(logits, labels));
    sums.count += double(rows.size());
  }
  return sums;
}

io::ConfigSchema classify_schema(const std::string& app) {
  io::ConfigSchema s;
  declare_training_job(s, app);
  declare_vision_model(s);
  s.string("data.path", "data/fashion-mnist.h5",
           "image data set made by tools/prepare-data --images fashion-mnist");
  s.integer("eval.batches", 0, "test micro-batches per evaluation (all ranks); 0: the whole split")
      .at_least(0);
  return s;
}

ClassifyOptions classify_options(const io::Config& c, int world) {
  ClassifyOptions o;
  o.run = run_from(c);
  o.batch = batch_from(c, world);
  o.engine.optimizer = optimizer_from(c);
  o.engine.zero = zero_from(c);
  o.engine.precision = precision_from(c);
  o.engine.gradient_clipping = o.run.gradient_clipping;
  o.engine.accumulation = o.batch.accumulation;
  o.schedule = scheduler_from(c, o.engine.optimizer.lr, o.run.train_steps);
  o.data_path = c.get<std::string>("data.path");
  o.model = vision_model_from(c, o.data_path);
  o.model.seed = o.run.seed;
  o.eval_batches = c.get<int64_t>("eval.batches");
  o.schedule.schedule.validate();
  o.engine.optimizer.validate();
  o.resolved_config_yaml = resolved_yaml(
      c, {fmt::format("train_batch_size={}", o.batch.global),
          fmt::format("gradient_accumulation_steps={}", o.batch.accumulation),
          fmt::format("scheduler.params.total_num_steps={}", o.schedule.schedule.total_steps)});
  return o;
}

namespace {

class ClassifyTask final : public TrainTask {
 public:
  ClassifyTask(const ClassifyOptions& o, dist::Communicator& comm, nn::ImageClassifier& model,
               Device device)
      : o_(o),
        comm_(comm),
        model_(model),
        device_(device),
        train_(data::load_image_split(o.data_path, "train")),
        test_(data::load_image_split(o.data_path, "test")),
        order_(train_.count, o.run.seed, true, 0x1a9e) {}

  double learning_rate(const LoopCounters& at) override { return o_.schedule.schedule.at(at.step); }

  // Rank r's micro-batch m of the step: samples of the shuffled epoch order
  // starting at at.samples + (r * accumulation + m) * micro.
  Tensor micro_batch_loss(const LoopCounters& at, int64_t m) override {
    const int64_t first =
        at.samples + (int64_t(comm_.rank()) * o_.batch.accumulation + m) * o_.batch.micro;
    std::vector<int64_t> rows(static_cast<size_t>(o_.batch.micro));
    for (int64_t i = 0; i < o_.batch.micro; ++i) rows[size_t(i)] = order_.at(first + i);
    Tensor images, labels;
    data::image_batch(train_, rows, device_, &images, &labels);
    const uint64_t micro_index =
        uint64_t(at.step) * uint64_t(comm_.size() * o_.batch.accumulation) +
        uint64_t(comm_.rank() * o_.batch.accumulation + m);
    const Tensor logits = model_.forward(images, true, micro_index);
    const Tensor loss = ag::cross_entropy(logits, labels);
    // Training accuracy of this micro-batch, summed over the step below.
    correct_ += double(count_correct(logits, labels));
    seen_ += double(rows.size());
    return loss;
  }

  StepWork step_work(const LoopCounters& /*at*/) override {
    double sums[2] = {correct_, seen_};
    comm_.allreduce_sum(sums, 2);
    correct_ = seen_ = 0;
    StepWork w;
    w.samples = o_.batch.global;
    w.tokens = o_.batch.global;  // images: the loop shows "img/s" (throughput_unit)
    w.flops = 3 * o_.model.forward_flops() * double(o_.batch.global);
    w.metrics = {{"train_accuracy", sums[1] > 0 ? sums[0] / sums[1] : 0.0}};
    return w;
  }

  // Mean cross entropy over the test split (or eval.batches micro-batches),
  // shared among ranks; accuracy in the metrics.
  double evaluate() override {
    const int64_t total =
        o_.eval_batches > 0 ? std::min(test_.count, o_.eval_batches * o_.batch.micro) : test_.count;
    const int64_t begin = total * comm_.rank() / comm_.size(),
                  end = total * (comm_.rank() + 1) / comm_.size();
    const EvalSums mine = evaluate_images(model_, test_, begin, end, o_.batch.micro, device_);
    double sums[3] = {mine.loss, mine.correct, mine.count};
    comm_.allreduce_sum(sums, 3);
    accuracy_ = sums[2] > 0 ? sums[1] / sums[2] : NAN;
    return sums[2] > 0 ? sums[0] / sums[2] : NAN;
  }
  nlohmann::ordered_json eval_metrics() const override { return {{"accuracy", accuracy_}}; }
  void save_state(StateMap& state) const override {
    state.set_file("encoder.json",
                   encoder_spec_json({o_.model, train_.mean, train_.std, train_.class_names}));
  }
  bool loss_is_log_likelihood() const override { return false; }
  const char* throughput_unit() const override { return "img"; }
  double accuracy() const { return accuracy_; }
  const data::ImageSet& train_set() const { return train_; }

 private:
  const ClassifyOptions& o_;
  dist::Communicator& comm_;
  nn::ImageClassifier& model_;
  Device device_;
  data::ImageSet train_, test_;
  data::EpochOrder order_;
  double correct_ = 0, seen_ = 0, accuracy_ = NAN;
};

}  // namespace

ClassifyResult classify(const ClassifyOptions& options, Job& job) {
  const ClassifyOptions& o = options;
  dist::Communicator& comm = job.world();
  const Device device = job.pick_device(o.run.device);
  kernels::MathModeGuard math(backend_for(device), o.engine.precision.math);
  nn::ImageClassifier model(o.model, device);
  nn::ParameterList params = model.parameters();
  const nn::ParameterList buffers = model.buffers();  // a checkpoint part of their own
  Engine engine("model", comm, params, o.engine);
  ClassifyTask task(o, comm, model, device);
  Loop loop(comm, o.run, device, engine, o.resolved_config_yaml);
  if (!buffers.empty()) loop.add_part({"buffers", &buffers, nullptr});
  loop.restore(task);
  if (job.leader()) {
    int64_t count = 0;
    for (const nn::Parameter& p : params) count += p.tensor.numel();
    log::info(
        "model: {} ({:.3f}M parameters) on {} x {} x {} images, {} classes; data {} ({} "
        "training images, an epoch is {:.1f} steps of {})",
        o.model.arch, double(count) / 1e6, o.model.channels, o.model.height, o.model.width,
        o.model.num_classes, o.data_path, task.train_set().count,
        double(task.train_set().count) / double(o.batch.global), o.batch.global);
  }
  log_engine(engine, device, comm.size());
  ClassifyResult result;
  result.loop = loop.run(task);
  result.test_accuracy = task.accuracy();
  return result;
}

int report_classify(const ClassifyOptions& options, const ClassifyResult& result) {
  const LoopResult& r = result.loop;
  if (r.stopped_early) return kExitStoppedResumable;
  log::info("done: {} steps, final train loss {:.4f}, test loss {:.4f}, test accuracy {:.2f}%",
            r.steps, r.final_train_loss, r.final_val_loss, 100 * result.test_accuracy);
  const std::string& out = options.run.output_dir;
  log::info("metrics: {}/metrics.jsonl  checkpoints: {}/checkpoints", out, out);
  return 0;
}

std::string encoder_spec_json(const ImageEncoderSpec& spec) {
  const nn::VisionConfig& m = spec.model;
  nlohmann::ordered_json j;
  j["model"] = {{"arch", m.arch},
                {"channels", m.channels},
                {"height", m.height},
                {"width", m.width},
                {"num_classes", m.num_classes},
                {"hidden", m.hidden},
                {"conv_channels", m.conv_channels},
                {"depth", m.depth},
                {"width_base", m.width_base},
                {"norm", m.norm},
                {"norm_groups", m.norm_groups},
                {"patch_size", m.patch_size},
                {"embed_dim", m.embed_dim},
                {"heads", m.heads},
                {"layers", m.layers}};
  j["pixel_mean"] = spec.mean;
  j["pixel_std"] = spec.std;
  j["class_names"] = spec.class_names;
  return j.dump(2);
}

ImageEncoderSpec read_encoder_spec(const std::string& checkpoint) {
  const std::string path = (std::filesystem::path(checkpoint) / "encoder.json").string();
  std::ifstream in(path);
  TURBINE_CHECK(in.good(),
                "'{}' is not an image classifier's checkpoint (no encoder.json): train one with "
                "`rlhf encoder` (model.arch: vit)",
                checkpoint);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ImageEncoderSpec spec;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    const nlohmann::json& m = j.at("model");
    nn::VisionConfig& c = spec.model;
    c.arch = m.at("arch");
    c.channels = m.at("channels");
    c.height = m.at("height");
    c.width = m.at("width");
    c.num_classes = m.at("num_classes");
    c.hidden = m.at("hidden").get<std::vector<int64_t>>();
    c.conv_channels = m.at("conv_channels").get<std::vector<int64_t>>();
    c.depth = m.at("depth");
    c.width_base = m.at("width_base");
    c.norm = m.at("norm");
    c.norm_groups = m.at("norm_groups");
    c.patch_size = m.at("patch_size");
    c.embed_dim = m.at("embed_dim");
    c.heads = m.at("heads");
    c.layers = m.at("layers");
    spec.mean = j.at("pixel_mean").get<std::vector<double>>();
    spec.std = j.at("pixel_std").get<std::vector<double>>();
    spec.class_names = j.at("class_names").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    TURBINE_FAIL("'{}' is damaged: {}", path, e.what());
  }
  spec.model.validate();
  TURBINE_CHECK(int64_t(spec.mean.size()) == spec.model.channels &&
                    int64_t(spec.std.size()) == spec.model.channels,
                "'{}': encoder.json has {} means and {} deviations for {} channels", checkpoint,
                spec.mean.size(), spec.std.size(), spec.model.channels);
  return spec;
}

int run_classify_app(Job& job, const JobFlags& flags, const std::string& app) {
  const auto options =
      job.configure<ClassifyOptions>(flags, classify_schema(app), classify_options);
  if (!options) return 1;
  if (flags.dry_run) return job.print_resolved(options->resolved_config_yaml);
  return job.run([&] { return report_classify(*options, classify(*options, job)); });
}

}  // namespace turbine::train
