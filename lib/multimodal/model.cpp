// VisualChat's model (model.hpp).
#include "multimodal/model.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "infer/convert.hpp"
#include "nn/lora.hpp"
#include "ops/ops.hpp"
#include "train/checkpoint.hpp"

namespace turbine::multimodal {

VisualChatModel::VisualChatModel(nn::Bloom lm, const VisualChatOptions& options, uint64_t seed,
                                 Device device)
    : VisualChatModel(std::move(lm), options, train::read_encoder_spec(options.encoder), seed,
                      device) {
  nn::ParameterList encoder_params = encoder_.parameters();
  train::CheckpointStore::load_weights(options_.encoder, encoder_params);
}

VisualChatModel::VisualChatModel(nn::Bloom lm, const VisualChatOptions& options,
                                 const train::ImageEncoderSpec& spec, uint64_t seed, Device device)
    : options_(options),
      spec_(spec),
      lm_(std::move(lm)),
      encoder_(spec_.model, device),
      device_(device) {
  TURBINE_CHECK(options_.projection == "baseline" || options_.projection == "vit",
                "visualchat.projection: {} is not baseline or vit", options_.projection);
  TURBINE_CHECK(options_.max_images >= 1, "visualchat.max_images: {} is not positive",
                options_.max_images);
  TURBINE_CHECK(spec_.model.arch == "vit",
                "visualchat.encoder '{}': a {} classifier; the encoder must be a vit (its "
                "per-patch features become image tokens)",
                options_.encoder, spec_.model.arch);
  nn::ParameterList encoder_params = encoder_.parameters();
  nn::set_trainable(encoder_params, false);
  const int64_t E = spec_.model.embed_dim, H = lm_.config().hidden_size;
  nn::Init init{seed, 0x71c, 0.02f, device};
  if (options_.projection == "vit") proj_blocks_.emplace_back(E, spec_.model.heads, init);
  proj_out_ = nn::Linear(E, H, true, init);
  proj_norm_ = nn::LayerNorm(H, 1e-12f, device);
  // The input embeddings train on a copy; the LM head keeps the original.
  lang_embed_.weight = lm_.parameter("word_embeddings.weight").clone();
  lang_embed_.weight.set_requires_grad(true);
  lm_.set_trainable(false);
  list_parameters();
}

void VisualChatModel::list_parameters() {
  parameters_ = lm_.parameters();
  nn::ParameterList encoder_params = encoder_.parameters();
  for (nn::Parameter& p : encoder_params) {
    p.name = "visual.encoder." + p.name;
    parameters_.push_back(p);
  }
  for (size_t i = 0; i < proj_blocks_.size(); ++i)
    proj_blocks_[i].parameters("visual.projection.blocks." + std::to_string(i) + ".", parameters_);
  proj_out_.parameters("visual.projection.linear.", parameters_);
  proj_norm_.parameters("visual.projection.norm.", parameters_);
  lang_embed_.parameters("visual.lang_embed.", parameters_);
}

Tensor VisualChatModel::image_tensor(const data::Image& source) const {
  const nn::VisionConfig& m = spec_.model;
  TURBINE_CHECK(source.channels == m.channels, "image with {} channels for an encoder of {}",
                source.channels, m.channels);
  const data::Image image = (source.width == m.width && source.height == m.height)
                                ? source
                                : data::resize(source, m.width, m.height);
  std::vector<float> x(size_t(m.channels * m.height * m.width));
  for (int64_t c = 0; c < m.channels; ++c)
    for (int64_t y = 0; y < m.height; ++y)
      for (int64_t w = 0; w < m.width; ++w)
        x[size_t((c * m.height + y) * m.width + w)] =
            float((image.at(y, w, c) / 255.0 - spec_.mean[size_t(c)]) / spec_.std[size_t(c)]);
  return Tensor::from_vector<float>({m.channels, m.height, m.width}, x);
}

Tensor VisualChatModel::load_image(const std::string& path) const {
  return image_tensor(data::read_image(path, spec_.model.channels));
}

Batch VisualChatModel::make_batch(const std::vector<const TokenizedConversation*>& rows,
                                  const std::vector<const Conversation*>& conversations,
                                  int32_t pad) {
  TURBINE_CHECK(!rows.empty() && rows.size() == conversations.size(),
                "visualchat: a batch of {} token rows for {} conversations", rows.size(),
                conversations.size());
  int64_t width = 0;
  for (const TokenizedConversation* r : rows) width = std::max<int64_t>(width, r->ids.size());
  const int64_t B = int64_t(rows.size());
  Batch b;
  std::vector<int64_t> ids(size_t(B * width), pad), targets(size_t(B * width), -100);
  b.kinds.assign(size_t(B * width), ops::kPaddingToken);
  std::vector<std::string> paths;
  for (int64_t r = 0; r < B; ++r) {
    const TokenizedConversation& t = *rows[size_t(r)];
    for (size_t p = 0; p < t.ids.size(); ++p) {
      ids[size_t(r * width) + p] = t.ids[p];
      targets[size_t(r * width) + p] = t.targets[p];
      b.kinds[size_t(r * width) + p] = t.kinds[p];
      b.counted += t.targets[p] != -100;
    }
    const auto& files = conversations[size_t(r)]->images;
    paths.insert(paths.end(), files.begin(), files.begin() + t.images);
  }
  b.ids = Tensor::from_vector<int64_t>({B, width}, ids);
  b.targets = Tensor::from_vector<int64_t>({B, width}, targets);
  b.images = load_images(paths);
  return b;
}

Tensor VisualChatModel::images_tensor(std::span<const data::Image> images) const {
  const nn::VisionConfig& m = spec_.model;
  std::vector<float> pixels;
  for (const data::Image& image : images) {
    const std::vector<float> v = image_tensor(image).to_vector<float>();
    pixels.insert(pixels.end(), v.begin(), v.end());
  }
  return Tensor::from_vector<float>({int64_t(images.size()), m.channels, m.height, m.width},
                                    pixels);
}

Tensor VisualChatModel::load_images(std::span<const std::string> paths) {
  std::vector<data::Image> images;
  for (const std::string& path : paths) {
    auto it = image_cache_.find(path);
    if (it == image_cache_.end())
      it = image_cache_.emplace(path, data::read_image(path, spec_.model.channels)).first;
    images.push_back(it->second);
  }
  return images_tensor(images);
}

Tensor VisualChatModel::project(const Tensor& images) {
  Tensor features;
  {
    const autograd::NoGradGuard frozen;  // the encoder does not train
    features = encoder_.features(images.to(device_));
  }
  for (const nn::VitBlock& block : proj_blocks_) features = block.forward(features);
  return proj_norm_.forward(proj_out_.forward(features));
}

Tensor VisualChatModel::embed(const Tensor& ids, std::span<const int32_t> kinds,
                              const Tensor& images) {
  const int64_t B = ids.dim(0), T = ids.dim(1), H = lm_.config().hidden_size;
  TURBINE_CHECK(int64_t(kinds.size()) == B * T, "visualchat: {} kinds for ids {}", kinds.size(),
                ids.str());
  const Tensor text = lang_embed_.forward(ids.to(device_));
  std::vector<int64_t> slots;  // the image positions, in order of appearance
  for (int64_t p = 0; p < B * T; ++p)
    if (kinds[size_t(p)] > 0) slots.push_back(p);
  const int64_t N = images.defined() ? images.dim(0) : 0, P = image_tokens();
  TURBINE_CHECK(int64_t(slots.size()) == N * P,
                "visualchat: {} image positions for {} images of {} tokens (each <image> marker "
                "needs one image)",
                slots.size(), N, P);
  if (N == 0) return text;
  const Tensor features = ag::reshape(project(images), {1, N * P, H});
  const Tensor index = Tensor::from_vector<int64_t>({1, N * P}, slots).to(device_);
  return ag::reshape(ag::scatter_rows(ag::reshape(text, {1, B * T, H}), index, features),
                     {B, T, H});
}

Tensor VisualChatModel::loss(const Batch& b) {
  const int64_t B = b.ids.dim(0), T = b.ids.dim(1);
  const Tensor x = embed(b.ids, b.kinds, b.images);
  if (!options_.mmca) return lm_.loss_from_hidden(lm_.hidden_states_from(x, nullptr), b.targets);
  const ops::MmcaMasks masks = ops::mmca_masks(b.kinds, B, T, T, device_);
  return lm_.loss_from_hidden(lm_.hidden_states_from(x, &masks), b.targets);
}

std::vector<int32_t> VisualChatModel::generate(const TokenizedConversation& prompt,
                                               const Tensor& images, int64_t max_new,
                                               int32_t stop) {
  const autograd::NoGradGuard inference;
  const int64_t T = int64_t(prompt.ids.size());
  nn::KvCache cache = lm_.new_cache(1, T + max_new);
  cache.set_mmca(options_.mmca);
  std::vector<int64_t> ids(prompt.ids.begin(), prompt.ids.end());
  Tensor logits = lm_.decode_from(
      embed(Tensor::from_vector<int64_t>({1, T}, ids), prompt.kinds, images), cache, prompt.kinds);
  std::vector<int32_t> out;
  const std::vector<int32_t> text = {ops::kTextToken};
  for (int64_t i = 0; i < max_new; ++i) {
    const std::vector<float> row = logits.to(Device::cpu()).to_vector<float>();
    const int32_t next = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
    if (next == stop) break;
    out.push_back(next);
    if (i + 1 == max_new) break;
    const Tensor id = Tensor::from_vector<int64_t>({1, 1}, {int64_t(next)});
    logits = lm_.decode_from(lang_embed_.forward(id.to(device_)), cache, text);
  }
  return out;
}

bool is_visualchat_checkpoint(const std::string& checkpoint) {
  return std::filesystem::exists(std::filesystem::path(checkpoint) / "encoder.json") &&
         std::filesystem::exists(std::filesystem::path(checkpoint) / "model.h5") &&
         train::CheckpointStore::has_weight(checkpoint, "visual.lang_embed.weight");
}

LoadedVisualChat load_visualchat(const std::string& checkpoint, Device device) {
  TURBINE_CHECK(is_visualchat_checkpoint(checkpoint),
                "'{}' is not a VisualChat checkpoint (rlhf sft with model.type: visualchat "
                "writes one: encoder.json and visual.* weights)",
                checkpoint);
  const infer::WeightReader reader(checkpoint);
  const std::string config_path = (std::filesystem::path(checkpoint) / "config.yaml").string();
  VisualChatOptions options;
  nn::LoraConfig lora;
  lora.rank = 0;
  try {
    const YAML::Node config = YAML::LoadFile(config_path);
    const YAML::Node section = config["visualchat"];
    TURBINE_CHECK(section, "{}: no visualchat section", config_path);
    options.projection = section["projection"].as<std::string>();
    options.mmca = section["attention"].as<std::string>() == "mmca";
    options.max_images = section["max_images"].as<int64_t>();
    options.encoder = checkpoint;
    if (config["lora_dim"]) lora.rank = config["lora_dim"].as<int64_t>();
    if (config["lora_scaling"]) lora.scaling = config["lora_scaling"].as<float>();
    if (config["lora_module_name"])
      lora.module_filter = config["lora_module_name"].as<std::string>();
  } catch (const YAML::Exception& e) {
    TURBINE_FAIL("{}: {}", config_path, e.what());
  }
  LoadedVisualChat out;
  out.model = std::make_unique<VisualChatModel>(nn::Bloom(reader.config(), 0, device), options,
                                                train::read_encoder_spec(checkpoint), 0, device);
  if (lora.rank > 0) {  // the adapters as trained, beside the frozen weights
    nn::apply_lora(out.model->lm(), lora);
    out.model->list_parameters();
  }
  train::CheckpointStore::load_weights(checkpoint, out.model->parameters());
  out.tokenizer = reader.tokenizer();
  const auto eos = out.tokenizer.eos_id();
  TURBINE_CHECK(eos.has_value(), "'{}': its tokenizer has no end-of-text token", checkpoint);
  out.end_token = *eos;
  return out;
}

Conversation question_conversation(const LoadedVisualChat& chat, int64_t images,
                                   const std::vector<Round>& history, const std::string& question) {
  Conversation c;
  c.id = "question";
  c.images.assign(size_t(images), "");
  c.rounds = history;
  int64_t shown = 0;
  for (const Round& r : history) shown += count_markers(r.question);
  std::string q = question;
  if (count_markers(q) == 0)  // no markers: the round shows the images not yet shown
    for (int64_t i = shown; i < images; ++i) q = std::string(kImageMarker) + " " + q;
  c.rounds.push_back({q, ""});
  check_conversation(c, chat.model->options().max_images, "the question");
  return c;
}

std::string answer_question(LoadedVisualChat& chat, const std::vector<data::Image>& images,
                            const std::vector<Round>& history, const std::string& question,
                            int64_t max_new_tokens) {
  const Conversation c = question_conversation(chat, int64_t(images.size()), history, question);
  const TemplateOptions options{chat.model->image_tokens(), chat.end_token, chat.end_token};
  const TokenizedConversation prompt =
      tokenize_conversation(c, chat.tokenizer, options, int64_t(c.rounds.size()), true);
  const std::vector<int32_t> answer = chat.model->generate(
      prompt, chat.model->images_tensor(images), max_new_tokens, chat.end_token);
  std::string text = chat.tokenizer.decode(answer);
  const size_t first = text.find_first_not_of(' ');
  return first == std::string::npos ? std::string() : text.substr(first);
}

std::string answer_question(LoadedVisualChat& chat, const std::vector<std::string>& images,
                            const std::vector<Round>& history, const std::string& question,
                            int64_t max_new_tokens) {
  question_conversation(chat, int64_t(images.size()), history, question);  // before any file
  std::vector<data::Image> decoded;
  for (const std::string& path : images)
    decoded.push_back(data::read_image(path, chat.model->encoder_spec().model.channels));
  return answer_question(chat, decoded, history, question, max_new_tokens);
}

}  // namespace turbine::multimodal
