// Flat parameter and gradient buffers.
#include "optim/flat.hpp"

#include "core/error.hpp"

namespace turbine::optim {

FlatParameters::FlatParameters(const nn::ParameterList& params, int64_t pad_to) {
  TURBINE_CHECK(pad_to >= 1, "FlatParameters: pad_to {} must be >= 1", pad_to);
  TURBINE_CHECK(!params.empty(), "FlatParameters: no parameters");
  const Device device = params.front().tensor.device();
  for (const nn::Parameter& p : params) {
    TURBINE_CHECK(p.tensor.dtype() == DType::f32 && p.tensor.device() == device,
                  "FlatParameters: parameter '{}' is {} (all must be f32 on {})", p.name,
                  p.tensor.str(), device.str());
    segments_.push_back({p.name, numel_, p.tensor.numel(), p.weight_decay});
    numel_ += p.tensor.numel();
  }
  const int64_t padded = (numel_ + pad_to - 1) / pad_to * pad_to;
  values_ = Tensor::zeros({padded}, DType::f32, device);
  grads_ = Tensor::zeros({padded}, DType::f32, device);
  for (size_t i = 0; i < params.size(); ++i) {
    const Segment& s = segments_[i];
    Tensor param = params[i].tensor;
    param.relocate_to(values_.narrow(0, s.offset, s.numel).view(param.shape()));
    param.set_grad(grads_.narrow(0, s.offset, s.numel).view(param.shape()));
  }
}

void FlatParameters::zero_grads() { grads_.fill(0.0f); }

std::pair<int64_t, int64_t> FlatParameters::shard(int rank, int world) const {
  TURBINE_CHECK(world >= 1 && rank >= 0 && rank < world && padded_numel() % world == 0,
                "FlatParameters::shard: rank {} of {} over {} elements", rank, world,
                padded_numel());
  const int64_t size = padded_numel() / world;
  return {rank * size, (rank + 1) * size};
}

}  // namespace turbine::optim
