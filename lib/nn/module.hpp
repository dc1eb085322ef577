// Parameters and the basic layers: Linear, Embedding, LayerNorm. Each layer
// owns its tensors and lists them under Hugging Face-style names. Linear
// layers sit behind LinearLayer, the point where a model's linear maps are
// wrapped (LoRA adapters) or split (column- and row-parallel layers).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.hpp"

namespace turbine::nn {

struct Parameter {
  std::string name;
  Tensor tensor;
  bool weight_decay = true;  // false for biases and LayerNorm parameters
  // false: frozen: no gradient is computed for it and no optimizer holds it
  // (a reference model, the base weights under LoRA). Layers list it from
  // the tensor's requires_grad, which set_trainable sets.
  bool trainable = true;
};
using ParameterList = std::vector<Parameter>;

// A copy of t that shares no memory, frozen or trainable as t is (undefined
// stays undefined): what a layer's clone() makes of each tensor.
Tensor copy_of(const Tensor& t);
// A layer's tensor as a Parameter, trainable as its requires_grad says.
Parameter listed(const std::string& name, const Tensor& t, bool weight_decay);

// The trainable subset (what an optimizer takes), in order.
ParameterList trainable(const ParameterList& params);
// Freezes (or unfreezes) the parameters whose name `select` accepts; all
// when `select` is empty. Sets each tensor's requires_grad to match.
void set_trainable(ParameterList& params, bool trainable,
                   const std::function<bool(const std::string&)>& select = {});

// Deterministic initialization: stream ids derive from a running counter, so
// the same seed and model layout give the same weights on every rank.
struct Init {
  uint64_t seed = 0;
  uint64_t next_stream = 0;
  float stddev = 0.02f;
  Device device = Device::cpu();
  Tensor normal(const Shape& shape) {
    return Tensor::randn(shape, seed, next_stream++, stddev, device);
  }
};

// y (..., out) = x (..., in) W^T + b, or something that computes it: a
// plain Linear, a Linear wrapped by an adapter, one shard of a split one.
class LinearLayer {
 public:
  virtual ~LinearLayer() = default;
  virtual Tensor forward(const Tensor& x) const = 0;
  // Appends its parameters, each named prefix + its own name ("weight").
  virtual void parameters(const std::string& prefix, ParameterList& out) = 0;
  // A copy that shares no weights.
  virtual std::unique_ptr<LinearLayer> clone() const = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // A wrapper that computes through a layer it owns with the same math (a
  // tensor-parallel layer's part) returns that layer's slot, so passes such
  // as compaction reach the plain layer inside; adapters that change the
  // math (LoRA) return null, as plain layers do.
  virtual std::unique_ptr<LinearLayer>* inner() { return nullptr; }
};

class Linear final : public LinearLayer {
 public:
  Linear() = default;
  Linear(int64_t in, int64_t out, bool bias, Init& init);
  Tensor forward(const Tensor& x) const override;
  void parameters(const std::string& prefix, ParameterList& out) override;
  std::unique_ptr<LinearLayer> clone() const override;
  int64_t in_features() const override { return weight.dim(1); }
  int64_t out_features() const override { return weight.dim(0); }
  Tensor weight, bias;  // weight (out, in) as Hugging Face stores it
};

class Embedding {
 public:
  Embedding() = default;
  Embedding(int64_t vocab, int64_t dim, Init& init);
  Embedding clone() const;  // shares no weights
  Tensor forward(const Tensor& ids) const;
  void parameters(const std::string& prefix, ParameterList& out);
  Tensor weight;  // (vocab, dim)
};

class LayerNorm {
 public:
  LayerNorm() = default;
  LayerNorm(int64_t dim, float eps, Device device);
  LayerNorm clone() const;  // shares no weights
  Tensor forward(const Tensor& x) const;
  void parameters(const std::string& prefix, ParameterList& out);
  Tensor weight, bias;
  float eps = 1e-5f;
};

}  // namespace turbine::nn
