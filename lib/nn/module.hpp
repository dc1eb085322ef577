// Parameters and the basic layers: Linear, Embedding, LayerNorm. Each layer
// owns its tensors and lists them under Hugging Face-style names.
#pragma once

#include <string>
#include <vector>

#include "tensor/tensor.hpp"

namespace turbine::nn {

struct Parameter {
  std::string name;
  Tensor tensor;
  bool weight_decay = true;  // false for biases and LayerNorm parameters
};
using ParameterList = std::vector<Parameter>;

// Deterministic initialization: stream ids derive from a running counter, so
// the same seed and model layout give the same weights on every rank.
struct Init {
  uint64_t seed = 0;
  uint64_t next_stream = 0;
  float stddev = 0.02f;
  Device device = Device::cpu();
  Tensor normal(const Shape& shape) { return Tensor::randn(shape, seed, next_stream++, stddev, device); }
};

class Linear {
 public:
  Linear() = default;
  Linear(int64_t in, int64_t out, bool bias, Init& init);
  Tensor forward(const Tensor& x) const;
  void parameters(const std::string& prefix, ParameterList& out);
  Tensor weight, bias;  // weight (out, in) as Hugging Face stores it
};

class Embedding {
 public:
  Embedding() = default;
  Embedding(int64_t vocab, int64_t dim, Init& init);
  Tensor forward(const Tensor& ids) const;
  void parameters(const std::string& prefix, ParameterList& out);
  Tensor weight;  // (vocab, dim)
};

class LayerNorm {
 public:
  LayerNorm() = default;
  LayerNorm(int64_t dim, float eps, Device device);
  Tensor forward(const Tensor& x) const;
  void parameters(const std::string& prefix, ParameterList& out);
  Tensor weight, bias;
  float eps = 1e-5f;
};

}  // namespace turbine::nn
