// Image classifiers for fedsim, cl-edge and VisualChat's encoder: an MLP, a
// LeNet-style CNN, a CIFAR-style ResNet (6n + 2 layers: ResNet-8, -14, -20)
// with BatchNorm2d or GroupNorm, and a small vision transformer (ViT,
// Dosovitskiy et al. 2021), on NCHW images. The MLP's, CNN's and ResNet's
// parameter names follow PyTorch's state_dict for the same modules
// (tools/make-golden-vision builds them), so checkpoints and golden files
// match by name; the ViT's follow timm's (its fused qkv is laid out (heads,
// 3, head_dim) as BLOOM's, and its MLP uses the tanh GeLU).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/module.hpp"

namespace turbine::nn {

struct VisionConfig {
  std::string arch = "cnn";  // mlp | cnn | resnet | vit
  int64_t channels = 1, height = 28, width = 28, num_classes = 10;
  // mlp: hidden widths. cnn: the fully connected layer(s) after the convolutions.
  std::vector<int64_t> hidden = {128};
  // cnn: output channels of its 5x5 convolutions (padding 2, each followed by
  // ReLU and 2x2 max pooling).
  std::vector<int64_t> conv_channels = {32, 64};
  int64_t depth = 8;           // resnet: 6n + 2
  int64_t width_base = 16;     // resnet: channels of the first stage (then 2x, 4x)
  std::string norm = "batch";  // resnet: batch | group
  int64_t norm_groups = 8;     // group norm: groups per layer (divides each width)
  float dropout = 0.0f;        // mlp / cnn: before each hidden fully connected layer's output
  // vit: square patches of patch_size pixels (dividing height and width),
  // each a token of embed_dim by a linear layer plus a learned position
  // embedding; `layers` pre-LN transformer blocks of `heads` heads
  // (bidirectional attention, a 4 x embed_dim MLP); a final LayerNorm; the
  // mean over the patches to a linear head.
  int64_t patch_size = 7, embed_dim = 64, heads = 4, layers = 2;
  uint64_t seed = 1234;

  void validate() const;  // clear errors for impossible shapes
  int64_t parameter_count() const;
  int64_t patches() const { return (height / patch_size) * (width / patch_size); }  // vit
  // Multiply-adds x 2 of one image's forward pass (convolutions and linear
  // layers; a training step is about 3x this).
  double forward_flops() const;
};

class Conv2d {
 public:
  Conv2d() = default;
  Conv2d(int64_t in, int64_t out, int kernel, int stride, int padding, bool bias, Init& init);
  Tensor forward(const Tensor& x) const;
  void parameters(const std::string& prefix, ParameterList& out);
  Tensor weight, bias;
  int stride = 1, padding = 0;
};

// BatchNorm2d (running statistics, PyTorch's momentum 0.1) or GroupNorm.
class Norm2d {
 public:
  Norm2d() = default;
  Norm2d(const std::string& kind, int64_t channels, int64_t groups, Device device);
  Tensor forward(const Tensor& x, bool training);
  void parameters(const std::string& prefix, ParameterList& out);
  // The running statistics (BatchNorm2d): state that is not trained.
  void buffers(const std::string& prefix, ParameterList& out);
  std::string kind;
  int64_t groups = 1;
  Tensor weight, bias, running_mean, running_var;
};

// A pre-LN transformer block of the ViT (and of VisualChat's vit
// projection): bidirectional attention, then a 4x tanh-GeLU MLP, each added
// to its input; LayerNorm eps 1e-6. x (N, T, dim) -> (N, T, dim).
struct VitBlock {
  VitBlock() = default;
  VitBlock(int64_t dim, int64_t heads, Init& init);
  Tensor forward(const Tensor& x) const;
  void parameters(const std::string& prefix, ParameterList& out);
  LayerNorm norm1, norm2;
  Linear qkv, proj, fc1, fc2;
  int heads = 1;
};

class ImageClassifier {
 public:
  explicit ImageClassifier(const VisionConfig& config, Device device = Device::cpu());
  ImageClassifier(ImageClassifier&&) noexcept;
  ImageClassifier& operator=(ImageClassifier&&) noexcept;
  ~ImageClassifier();
  // x (N, C, H, W) normalized -> logits (N, classes). training: dropout and
  // BatchNorm's batch statistics (which then update the running ones).
  Tensor forward(const Tensor& x, bool training, uint64_t dropout_step = 0);
  // vit: the encoder's output (N, patches, embed_dim) after its final
  // LayerNorm, one feature per patch (VisualChat's image features).
  Tensor features(const Tensor& x);
  ParameterList parameters();
  // Named non-trained state (BatchNorm's running statistics), listed frozen,
  // for checkpoints and for averaging in federated learning.
  ParameterList buffers();
  const VisionConfig& config() const { return config_; }
  Device device() const { return device_; }

 private:
  struct Layers;
  VisionConfig config_;
  Device device_;
  std::unique_ptr<Layers> layers_;
};

}  // namespace turbine::nn
