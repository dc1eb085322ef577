// Compact-weight linear layers (nn/compact.hpp).
#include "nn/compact.hpp"

#include "autograd/tape.hpp"
#include "core/error.hpp"

namespace turbine::nn {

CompactLinear::CompactLinear(const Linear& from, DType type, int group)
    : weight(ops::compact_weight(from.weight, type, group)), bias(copy_of(from.bias)) {
  if (bias.defined()) bias.set_requires_grad(false);
}

Tensor CompactLinear::forward(const Tensor& x) const {
  TURBINE_CHECK(!autograd::needs_grad({&x}),
                "a compact ({}) linear layer has no backward: run it under NoGradGuard, or keep "
                "the layers a gradient passes through in f32",
                dtype_name(weight.values.dtype()));
  return ops::linear_compact(x, weight, bias);
}

void CompactLinear::parameters(const std::string& prefix, ParameterList& out) {
  if (bias.defined()) out.push_back(listed(prefix + "bias", bias, false));
}

std::unique_ptr<LinearLayer> CompactLinear::clone() const {
  auto copy = std::unique_ptr<CompactLinear>(new CompactLinear());
  copy->weight.values = weight.values.clone();
  if (weight.scales.defined()) copy->weight.scales = weight.scales.clone();
  copy->weight.group = weight.group;
  copy->bias = copy_of(bias);
  return copy;
}

namespace {
// One layer slot: through wrappers with the same math (tensor-parallel parts)
// to the plain layer, which becomes a CompactLinear.
void compact_slot(const std::string& name, std::unique_ptr<LinearLayer>& outer, DType type,
                  int group, CompactReport& report) {
  std::unique_ptr<LinearLayer>* slot = &outer;
  while (dynamic_cast<const Linear*>(slot->get()) == nullptr && (*slot)->inner() != nullptr)
    slot = (*slot)->inner();
  std::unique_ptr<LinearLayer>& layer = *slot;
  const auto* plain = dynamic_cast<const Linear*>(layer.get());
  TURBINE_CHECK(plain != nullptr,
                "{}: only plain linear layers can be compacted (merge LoRA adapters first)", name);
  report.bytes_before += int64_t(plain->weight.nbytes());
  auto compact = std::make_unique<CompactLinear>(*plain, type, group);
  report.bytes_after += compact->weight.nbytes();
  layer = std::move(compact);
  ++report.layers;
}
}  // namespace

CompactReport compact_linears(Bloom& model, DType type, int group) {
  CompactReport report;
  model.transform_linears([&](const std::string& name, std::unique_ptr<LinearLayer>& layer) {
    compact_slot(name, layer, type, group, report);
  });
  return report;
}

CompactReport compact_block(BloomBlock& block, DType type, int group) {
  CompactReport report;
  compact_slot("self_attention.query_key_value", block.query_key_value, type, group, report);
  compact_slot("self_attention.dense", block.dense, type, group, report);
  compact_slot("mlp.dense_h_to_4h", block.dense_h_to_4h, type, group, report);
  compact_slot("mlp.dense_4h_to_h", block.dense_4h_to_h, type, group, report);
  return report;
}

}  // namespace turbine::nn
