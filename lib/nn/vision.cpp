// The image classifiers of vision.hpp on the differentiable ops.
#include "nn/vision.hpp"

#include <cmath>
#include <vector>

#include "autograd/functions.hpp"
#include "core/error.hpp"

namespace turbine::nn {

namespace {

// He (Kaiming) normal initialization for layers followed by ReLU.
Tensor he_normal(const Shape& shape, int64_t fan_in, Init& init) {
  Tensor t = Tensor::randn(shape, init.seed, init.next_stream++,
                           float(std::sqrt(2.0 / double(fan_in))), init.device);
  t.set_requires_grad(true);
  return t;
}

Tensor filled(int64_t n, float value, Device device, bool trainable) {
  Tensor t = Tensor::full({n}, value, device);
  if (trainable) t.set_requires_grad(true);
  return t;
}

Linear linear_layer(int64_t in, int64_t out, Init& init) {
  Linear l;
  l.weight = he_normal({out, in}, in, init);
  l.bias = filled(out, 0.0f, init.device, true);
  return l;
}

bool is_resnet_depth(int64_t depth) {
  return depth >= 8 && (depth - 2) % 6 == 0;
}

}  // namespace

void VisionConfig::validate() const {
  TURBINE_CHECK(arch == "mlp" || arch == "cnn" || arch == "resnet" || arch == "vit",
                "model.arch: {} is not mlp, cnn, resnet or vit", arch);
  TURBINE_CHECK(channels >= 1 && height >= 1 && width >= 1 && num_classes >= 2,
                "model: images of {} x {} x {} and {} classes are not a classification problem",
                channels, height, width, num_classes);
  TURBINE_CHECK(dropout >= 0.0f && dropout < 1.0f, "model.dropout: {} is not in [0, 1)", dropout);
  for (int64_t h : hidden) TURBINE_CHECK(h >= 1, "model.hidden: width {} is not positive", h);
  if (arch == "cnn") {
    TURBINE_CHECK(!conv_channels.empty(), "model.conv_channels: a cnn needs at least one");
    int64_t h = height, w = width;
    for (int64_t c : conv_channels) {
      TURBINE_CHECK(c >= 1, "model.conv_channels: {} is not positive", c);
      h /= 2;
      w /= 2;
    }
    TURBINE_CHECK(h >= 1 && w >= 1, "model: {} poolings of 2x2 leave nothing of {} x {} images",
                  conv_channels.size(), height, width);
  }
  if (arch == "resnet") {
    TURBINE_CHECK(is_resnet_depth(depth), "model.depth: {} is not 6n + 2 (8, 14, 20, 32, ...)",
                  depth);
    TURBINE_CHECK(width_base >= 1, "model.width_base: {} is not positive", width_base);
    TURBINE_CHECK(norm == "batch" || norm == "group", "model.norm: {} is not batch or group", norm);
    if (norm == "group")
      TURBINE_CHECK(norm_groups >= 1 && width_base % norm_groups == 0,
                    "model.norm_groups: {} does not divide model.width_base {}", norm_groups,
                    width_base);
    TURBINE_CHECK(height >= 4 && width >= 4, "model: a resnet needs images of at least 4 x 4");
  }
  if (arch == "vit") {
    TURBINE_CHECK(patch_size >= 1 && height % patch_size == 0 && width % patch_size == 0,
                  "model.patch_size: {} does not divide the {} x {} images", patch_size, height,
                  width);
    TURBINE_CHECK(layers >= 1, "model.layers: {} is not positive", layers);
    TURBINE_CHECK(heads >= 1 && embed_dim % heads == 0,
                  "model.heads: {} does not divide model.embed_dim {}", heads, embed_dim);
  }
}

Conv2d::Conv2d(int64_t in, int64_t out, int kernel, int stride_, int padding_, bool with_bias,
               Init& init)
    : weight(he_normal({out, in, kernel, kernel}, in * kernel * kernel, init)),
      stride(stride_),
      padding(padding_) {
  if (with_bias) bias = filled(out, 0.0f, init.device, true);
}

Tensor Conv2d::forward(const Tensor& x) const {
  return ag::conv2d(x, weight, bias, stride, padding);
}

void Conv2d::parameters(const std::string& prefix, ParameterList& out) {
  out.push_back(listed(prefix + "weight", weight, true));
  if (bias.defined()) out.push_back(listed(prefix + "bias", bias, false));
}

Norm2d::Norm2d(const std::string& kind_, int64_t channels, int64_t groups_, Device device)
    : kind(kind_),
      groups(groups_),
      weight(filled(channels, 1.0f, device, true)),
      bias(filled(channels, 0.0f, device, true)) {
  if (kind == "batch") {
    running_mean = Tensor::zeros({channels}, DType::f32, device);
    running_var = Tensor::full({channels}, 1.0f, device);
  }
}

Tensor Norm2d::forward(const Tensor& x, bool training) {
  if (kind == "group") return ag::group_norm(x, int(groups), weight, bias);
  return ag::batch_norm2d(x, weight, bias, &running_mean, &running_var, training);
}

void Norm2d::parameters(const std::string& prefix, ParameterList& out) {
  out.push_back(listed(prefix + "weight", weight, false));
  out.push_back(listed(prefix + "bias", bias, false));
}

void Norm2d::buffers(const std::string& prefix, ParameterList& out) {
  if (kind != "batch") return;
  out.push_back({prefix + "running_mean", running_mean, false, false});
  out.push_back({prefix + "running_var", running_var, false, false});
}

namespace {

// A basic residual block: conv3x3-norm-relu-conv3x3-norm plus the shortcut
// (a 1x1 convolution and norm where the shape changes), then ReLU.
struct Block {
  Conv2d conv1, conv2, shortcut_conv;
  Norm2d bn1, bn2, shortcut_norm;
  bool projected = false;

  Tensor forward(const Tensor& x, bool training) {
    Tensor h = ag::relu(bn1.forward(conv1.forward(x), training));
    h = bn2.forward(conv2.forward(h), training);
    const Tensor skip = projected ? shortcut_norm.forward(shortcut_conv.forward(x), training) : x;
    return ag::relu(ag::add(h, skip));
  }
};

// Images (N, C, H, W) -> their p x p patches (N, (H/p)(W/p), C p p), each
// flattened (channel, row, column) as a p x p convolution's weight is, row
// by row of patches. The images need no gradient: they are the input.
Tensor patchify(const Tensor& x, int64_t p, Device device) {
  const Tensor host = x.to(Device::cpu()).contiguous();
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t rows = H / p, cols = W / p, size = C * p * p;
  std::vector<float> out(size_t(N * rows * cols * size));
  const float* in = host.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t q = 0; q < cols; ++q) {
        float* patch = out.data() + ((n * rows + r) * cols + q) * size;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t i = 0; i < p; ++i)
            for (int64_t j = 0; j < p; ++j)
              *patch++ = in[((n * C + c) * H + r * p + i) * W + q * p + j];
      }
  return Tensor::from_vector<float>({N, rows * cols, size}, out, device);
}

}  // namespace

struct ImageClassifier::Layers {
  std::vector<Conv2d> convs;  // cnn: conv1, conv2, ...
  Conv2d stem;                // resnet: conv1
  Norm2d stem_norm;           // resnet: bn1
  std::vector<std::vector<Block>> stages;
  std::vector<Linear> fcs;  // mlp, cnn: fc1, fc2, ...; resnet: fc; vit: head
  Linear patch_embed;       // vit
  Tensor pos_embed;         // vit: (patches x embed_dim), flat
  std::vector<VitBlock> blocks;
  LayerNorm norm;  // vit: after the blocks
};

ImageClassifier::ImageClassifier(const VisionConfig& config, Device device)
    : config_(config), device_(device), layers_(std::make_unique<Layers>()) {
  config_.validate();
  Init init{config_.seed, 0x715e, 0.02f, device};
  Layers& l = *layers_;
  const VisionConfig& c = config_;
  if (c.arch == "resnet") {
    const int64_t n = (c.depth - 2) / 6;
    const int64_t groups = c.norm == "group" ? c.norm_groups : 1;
    l.stem = Conv2d(c.channels, c.width_base, 3, 1, 1, false, init);
    l.stem_norm = Norm2d(c.norm, c.width_base, groups, device);
    int64_t in = c.width_base;
    for (int s = 0; s < 3; ++s) {
      const int64_t out = c.width_base << s;
      std::vector<Block> blocks;
      for (int64_t b = 0; b < n; ++b) {
        const int stride = (s > 0 && b == 0) ? 2 : 1;
        Block block;
        block.conv1 = Conv2d(in, out, 3, stride, 1, false, init);
        block.bn1 = Norm2d(c.norm, out, groups, device);
        block.conv2 = Conv2d(out, out, 3, 1, 1, false, init);
        block.bn2 = Norm2d(c.norm, out, groups, device);
        block.projected = stride != 1 || in != out;
        if (block.projected) {
          block.shortcut_conv = Conv2d(in, out, 1, stride, 0, false, init);
          block.shortcut_norm = Norm2d(c.norm, out, groups, device);
        }
        blocks.push_back(std::move(block));
        in = out;
      }
      l.stages.push_back(std::move(blocks));
    }
    l.fcs.push_back(linear_layer(in, c.num_classes, init));
    return;
  }
  if (c.arch == "vit") {
    const int64_t E = c.embed_dim;
    l.patch_embed = Linear(c.channels * c.patch_size * c.patch_size, E, true, init);
    l.pos_embed = init.normal({c.patches() * E});
    l.pos_embed.set_requires_grad(true);
    for (int64_t i = 0; i < c.layers; ++i) l.blocks.emplace_back(E, c.heads, init);
    l.norm = LayerNorm(E, 1e-6f, device);
    l.fcs.push_back(Linear(E, c.num_classes, true, init));
    return;
  }
  int64_t features = c.channels * c.height * c.width;
  if (c.arch == "cnn") {
    int64_t in = c.channels, h = c.height, w = c.width;
    for (int64_t out : c.conv_channels) {
      l.convs.emplace_back(in, out, 5, 1, 2, true, init);
      in = out;
      h /= 2;
      w /= 2;
    }
    features = in * h * w;
  }
  for (int64_t width : c.hidden) {
    l.fcs.push_back(linear_layer(features, width, init));
    features = width;
  }
  l.fcs.push_back(linear_layer(features, c.num_classes, init));
}

ImageClassifier::ImageClassifier(ImageClassifier&&) noexcept = default;
ImageClassifier& ImageClassifier::operator=(ImageClassifier&&) noexcept = default;
ImageClassifier::~ImageClassifier() = default;

Tensor ImageClassifier::forward(const Tensor& x, bool training, uint64_t dropout_step) {
  const VisionConfig& c = config_;
  TURBINE_CHECK(
      x.ndim() == 4 && x.dim(1) == c.channels && x.dim(2) == c.height && x.dim(3) == c.width,
      "{}: expected images (N, {}, {}, {}), got {}", c.arch, c.channels, c.height, c.width,
      x.str());
  Layers& l = *layers_;
  Tensor h = x;
  if (c.arch == "resnet") {
    h = ag::relu(l.stem_norm.forward(l.stem.forward(h), training));
    for (auto& stage : l.stages)
      for (Block& block : stage) h = block.forward(h, training);
    // Global average pooling over what is left of the image.
    h = ag::avg_pool2d(h, int(h.dim(2)), int(h.dim(2)));
    TURBINE_CHECK(h.dim(3) == 1, "resnet: images must be square, got {}", x.str());
    return l.fcs.back().forward(ag::flatten(h));
  }
  if (c.arch == "vit") {
    // The mean over the patches: a (1, P) row of 1/P times each image's features.
    const Tensor f = features(x);
    const int64_t N = f.dim(0), P = f.dim(1);
    const Tensor mean = Tensor::full({N, 1, P}, 1.0f / float(P), device_);
    return l.fcs.back().forward(ag::reshape(ag::matmul(mean, f), {N, c.embed_dim}));
  }
  for (const Conv2d& conv : l.convs) h = ag::max_pool2d(ag::relu(conv.forward(h)), 2, 2);
  h = ag::flatten(h);
  for (size_t i = 0; i + 1 < l.fcs.size(); ++i) {
    h = ag::relu(l.fcs[i].forward(h));
    if (training && c.dropout > 0)
      h = ag::dropout(h, c.dropout, ops::DropoutRng{c.seed, 0xd0 + i, dropout_step});
  }
  return l.fcs.back().forward(h);
}

VitBlock::VitBlock(int64_t dim, int64_t heads_, Init& init)
    : norm1(dim, 1e-6f, init.device),
      norm2(dim, 1e-6f, init.device),
      qkv(dim, 3 * dim, true, init),
      proj(dim, dim, true, init),
      fc1(dim, 4 * dim, true, init),
      fc2(4 * dim, dim, true, init),
      heads(int(heads_)) {}

Tensor VitBlock::forward(const Tensor& x) const {
  const ops::Qkv parts = ag::split_qkv(qkv.forward(norm1.forward(x)), heads);
  ops::AttentionOptions options;
  options.causal = false;
  const Tensor attended = ag::merge_heads(ag::attention(parts.q, parts.k, parts.v, options));
  const Tensor x1 = ag::add(x, proj.forward(attended));
  return ag::add(x1, fc2.forward(ag::gelu(fc1.forward(norm2.forward(x1)))));
}

void VitBlock::parameters(const std::string& prefix, ParameterList& out) {
  norm1.parameters(prefix + "norm1.", out);
  qkv.parameters(prefix + "attn.qkv.", out);
  proj.parameters(prefix + "attn.proj.", out);
  norm2.parameters(prefix + "norm2.", out);
  fc1.parameters(prefix + "mlp.fc1.", out);
  fc2.parameters(prefix + "mlp.fc2.", out);
}

Tensor ImageClassifier::features(const Tensor& x) {
  const VisionConfig& c = config_;
  TURBINE_CHECK(c.arch == "vit", "image features come from a vit encoder, not a {}", c.arch);
  TURBINE_CHECK(
      x.ndim() == 4 && x.dim(1) == c.channels && x.dim(2) == c.height && x.dim(3) == c.width,
      "vit: expected images (N, {}, {}, {}), got {}", c.channels, c.height, c.width, x.str());
  const Layers& l = *layers_;
  const int64_t N = x.dim(0), P = c.patches(), E = c.embed_dim;
  const Tensor tokens = l.patch_embed.forward(patchify(x, c.patch_size, device_));
  Tensor h = ag::reshape(ag::add_bias(ag::reshape(tokens, {N, P * E}), l.pos_embed), {N, P, E});
  for (const VitBlock& block : l.blocks) h = block.forward(h);
  return l.norm.forward(h);
}

ParameterList ImageClassifier::parameters() {
  ParameterList out;
  Layers& l = *layers_;
  if (config_.arch == "vit") {
    l.patch_embed.parameters("patch_embed.", out);
    out.push_back(listed("pos_embed", l.pos_embed, false));
    for (size_t i = 0; i < l.blocks.size(); ++i)
      l.blocks[i].parameters("blocks." + std::to_string(i) + ".", out);
    l.norm.parameters("norm.", out);
    l.fcs.back().parameters("head.", out);
    return out;
  }
  if (config_.arch == "resnet") {
    l.stem.parameters("conv1.", out);
    l.stem_norm.parameters("bn1.", out);
    for (size_t s = 0; s < l.stages.size(); ++s)
      for (size_t b = 0; b < l.stages[s].size(); ++b) {
        Block& block = l.stages[s][b];
        const std::string p = "layer" + std::to_string(s + 1) + "." + std::to_string(b) + ".";
        block.conv1.parameters(p + "conv1.", out);
        block.bn1.parameters(p + "bn1.", out);
        block.conv2.parameters(p + "conv2.", out);
        block.bn2.parameters(p + "bn2.", out);
        if (block.projected) {
          block.shortcut_conv.parameters(p + "shortcut.0.", out);
          block.shortcut_norm.parameters(p + "shortcut.1.", out);
        }
      }
    l.fcs.back().parameters("fc.", out);
    return out;
  }
  for (size_t i = 0; i < l.convs.size(); ++i)
    l.convs[i].parameters("conv" + std::to_string(i + 1) + ".", out);
  for (size_t i = 0; i < l.fcs.size(); ++i)
    l.fcs[i].parameters("fc" + std::to_string(i + 1) + ".", out);
  return out;
}

ParameterList ImageClassifier::buffers() {
  ParameterList out;
  if (config_.arch != "resnet") return out;
  Layers& l = *layers_;
  l.stem_norm.buffers("bn1.", out);
  for (size_t s = 0; s < l.stages.size(); ++s)
    for (size_t b = 0; b < l.stages[s].size(); ++b) {
      Block& block = l.stages[s][b];
      const std::string p = "layer" + std::to_string(s + 1) + "." + std::to_string(b) + ".";
      block.bn1.buffers(p + "bn1.", out);
      block.bn2.buffers(p + "bn2.", out);
      if (block.projected) block.shortcut_norm.buffers(p + "shortcut.1.", out);
    }
  return out;
}

double VisionConfig::forward_flops() const {
  auto conv = [](double in, double out, double k, double h, double w) {
    return 2 * in * out * k * k * h * w;
  };
  double flops = 0, features = double(channels * height * width);
  if (arch == "vit") {
    const double P = double(patches()), E = double(embed_dim);
    flops += 2 * P * double(channels * patch_size * patch_size) * E;
    // qkv, scores and values, proj, the MLP's two layers.
    const double block =
        2 * P * E * 3 * E + 2 * 2 * P * P * E + 2 * P * E * E + 2 * 2 * P * E * 4 * E;
    return flops + double(layers) * block + 2 * E * double(num_classes);
  }
  if (arch == "resnet") {
    const int64_t n = (depth - 2) / 6;
    double h = double(height), w = double(width), in = double(width_base);
    flops += conv(double(channels), in, 3, h, w);
    for (int s = 0; s < 3; ++s) {
      const double out = double(width_base << s);
      for (int64_t b = 0; b < n; ++b) {
        if (s > 0 && b == 0) {
          h = std::floor((h - 1) / 2 + 1);
          w = std::floor((w - 1) / 2 + 1);
          flops += conv(in, out, 1, h, w);  // the projection shortcut
        }
        flops += conv(in, out, 3, h, w) + conv(out, out, 3, h, w);
        in = out;
      }
    }
    return flops + 2 * in * double(num_classes);
  }
  if (arch == "cnn") {
    double in = double(channels), h = double(height), w = double(width);
    for (int64_t out : conv_channels) {
      flops += conv(in, double(out), 5, h, w);
      in = double(out);
      h = std::floor(h / 2);
      w = std::floor(w / 2);
    }
    features = in * h * w;
  }
  for (int64_t width_out : hidden) {
    flops += 2 * features * double(width_out);
    features = double(width_out);
  }
  return flops + 2 * features * double(num_classes);
}

int64_t VisionConfig::parameter_count() const {
  ImageClassifier model(*this);
  int64_t total = 0;
  for (const Parameter& p : model.parameters()) total += p.tensor.numel();
  return total;
}

}  // namespace turbine::nn
