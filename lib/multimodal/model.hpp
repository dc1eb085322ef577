// DeepSpeed-VisualChat's model (Yao et al. 2023) over Turbine's parts: a
// frozen vision encoder (a ViT pretrained by `rlhf encoder`), a trainable
// projection of its per-patch features into the language model's embedding
// space (baseline: linear + LayerNorm; vit: a ViT block first), and a BLOOM
// frozen except a trainable copy of its word embeddings for the input side
// (the LM head keeps the original, as DeepSpeed-VisualChat's lang_embed),
// and LoRA adapters if asked. Attention is MMCA (ops::mmca_masks) or plain
// causal attention, for comparison.
//
// Parameters: BLOOM's by their usual names (so infer can read the language
// model), then visual.encoder.*, visual.projection.*,
// visual.lang_embed.weight: one checkpoint holds the whole model.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "data/png.hpp"
#include "multimodal/dialogue.hpp"
#include "nn/bloom.hpp"
#include "nn/vision.hpp"
#include "train/classify.hpp"

namespace turbine::multimodal {

struct VisualChatOptions {
  std::string encoder;                  // an `rlhf encoder` checkpoint
  std::string projection = "baseline";  // baseline | vit
  bool mmca = true;                     // false: causal attention
  int64_t max_images = 8;
};

// A batch of conversations as the model reads it.
struct Batch {
  Tensor ids;                  // (B, T) i64, image positions hold a pad id
  std::vector<int32_t> kinds;  // (B, T) row-major: ops::kTextToken, padding, image n
  Tensor targets;              // (B, T) i64, -100 where nothing is learned
  Tensor images;               // (N, C, H, W) normalized, in order of appearance; N may be 0
  int64_t counted = 0;         // targets that count
};

class VisualChatModel {
 public:
  // lm: the language model (its weights loaded); the encoder is read from
  // options.encoder. Freezes everything but the projection and lang_embed.
  VisualChatModel(nn::Bloom lm, const VisualChatOptions& options, uint64_t seed, Device device);
  // The same with the encoder's spec given and its weights left to the
  // caller (a VisualChat checkpoint holds them: load_visualchat).
  VisualChatModel(nn::Bloom lm, const VisualChatOptions& options,
                  const train::ImageEncoderSpec& spec, uint64_t seed, Device device);

  const VisualChatOptions& options() const { return options_; }
  int64_t image_tokens() const { return spec_.model.patches(); }
  const train::ImageEncoderSpec& encoder_spec() const { return spec_; }
  nn::Bloom& lm() { return lm_; }
  const nn::Bloom& lm() const { return lm_; }
  nn::ParameterList& parameters() { return parameters_; }
  // Rebuilds the parameter list (after LoRA wrapped the language model's layers).
  void list_parameters();

  // An image file as the encoder's input (C, H, W) normalized: decoded,
  // converted to its channels, resized to its size. Errors name the file.
  Tensor load_image(const std::string& path) const;
  Tensor image_tensor(const data::Image& image) const;
  // Image files as a batch (N, C, H, W) in host memory; decoded once per path.
  Tensor load_images(std::span<const std::string> paths);
  Tensor images_tensor(std::span<const data::Image> images) const;  // the same, decoded already
  // Conversations tokenized and padded on the right into a batch; their
  // images loaded (cached by path).
  Batch make_batch(const std::vector<const TokenizedConversation*>& rows,
                   const std::vector<const Conversation*>& conversations, int32_t pad);

  // The input embeddings (B, T, H): lang_embed's rows with each image's
  // projected features where its positions are.
  Tensor embed(const Tensor& ids, std::span<const int32_t> kinds, const Tensor& images);
  // Mean next-token loss over the counted targets.
  Tensor loss(const Batch& batch);
  // Projected features (N, image_tokens, H) of normalized images (N, C, H, W).
  Tensor project(const Tensor& images);

  // Greedy answers: the conversation's positions so far (ids, kinds; images
  // in order) through a KV cache, then up to max_new tokens until `stop`.
  // Returns the new tokens (without stop).
  std::vector<int32_t> generate(const TokenizedConversation& prompt, const Tensor& images,
                                int64_t max_new, int32_t stop);

 private:
  VisualChatOptions options_;
  train::ImageEncoderSpec spec_;
  nn::Bloom lm_;
  nn::ImageClassifier encoder_;
  std::vector<nn::VitBlock> proj_blocks_;  // vit projection: a ViT block first
  nn::Linear proj_out_;
  nn::LayerNorm proj_norm_;
  nn::Embedding lang_embed_;
  nn::ParameterList parameters_;
  Device device_;
  std::map<std::string, data::Image> image_cache_;  // decoded files, by path
};

// A trained VisualChat (rlhf sft with model.type: visualchat): the model
// with every weight, its tokenizer and the end token of its answers.
struct LoadedVisualChat {
  std::unique_ptr<VisualChatModel> model;
  data::Tokenizer tokenizer;
  int32_t end_token = 0;
};
// Whether `checkpoint` is a VisualChat checkpoint (its encoder.json and
// visual.* weights).
bool is_visualchat_checkpoint(const std::string& checkpoint);
LoadedVisualChat load_visualchat(const std::string& checkpoint, Device device);

// One question about images, answered greedily: `question` with an <image>
// marker per image (or none: the images are shown first), after the earlier
// rounds `history` (their images first in `images`). Errors for marker and
// image counts that differ, too many images, unreadable images.
std::string answer_question(LoadedVisualChat& chat, const std::vector<std::string>& images,
                            const std::vector<Round>& history, const std::string& question,
                            int64_t max_new_tokens);
// The same with the images decoded already (the server's); check_question
// runs first, so its errors are the caller's input errors.
std::string answer_question(LoadedVisualChat& chat, const std::vector<data::Image>& images,
                            const std::vector<Round>& history, const std::string& question,
                            int64_t max_new_tokens);
// The conversation answer_question would build, checked (marker and image
// counts, max_images); throws naming the problem.
Conversation question_conversation(const LoadedVisualChat& chat, int64_t images,
                                   const std::vector<Round>& history, const std::string& question);

}  // namespace turbine::multimodal
