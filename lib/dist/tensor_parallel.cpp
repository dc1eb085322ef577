// Tensor-parallel BLOOM: the split and the gathered logits.
#include "dist/tensor_parallel.hpp"

#include "core/error.hpp"
#include "dist/collectives.hpp"
#include "dist/parallel_linear.hpp"
#include "ops/ops.hpp"

namespace turbine::dist {

void split_bloom(nn::Bloom& model, ProcessGroup& group) {
  model.config().check_tensor_parallel(group.size());  // before any layer is split
  if (group.size() == 1) return;
  model.transform_linears([&](const std::string& name, std::unique_ptr<nn::LinearLayer>& layer) {
    const auto* full = dynamic_cast<const nn::Linear*>(layer.get());
    TURBINE_CHECK(full != nullptr,
                  "{}: only plain linear layers can be split for tensor parallelism (split "
                  "before compacting or adding adapters)",
                  name);
    const bool by_rows = name.ends_with("query_key_value") || name.ends_with("dense_h_to_4h");
    if (by_rows)
      layer = std::make_unique<ColumnParallelLinear>(*full, group, /*gather_output=*/false);
    else
      layer = std::make_unique<RowParallelLinear>(*full, group, /*input_is_parallel=*/true);
  });
  model.shard_heads(group.rank(), group.size());
}

Tensor gather_vocab_logits(ProcessGroup& group, const nn::Bloom& model, const Tensor& local) {
  const nn::Bloom::VocabSlice slice = model.vocab_slice();
  if (group.size() == 1 || slice.count == model.config().vocab_size) return local;
  TURBINE_CHECK(local.ndim() == 2 && local.dim(1) == slice.count,
                "gather_vocab_logits: expected (batch, {}) logits, got {}", slice.count,
                local.str());
  Tensor padded = local.contiguous();
  if (slice.count < slice.block) {  // the last rank's shorter slice
    const Tensor parts[] = {padded, Tensor::zeros({local.dim(0), slice.block - slice.count},
                                                  local.dtype(), local.device())};
    padded = ops::concat(parts, 1);
  }
  const Tensor all = all_gather(group, padded, 1);
  return all.narrow(1, 0, model.config().vocab_size).contiguous();
}

}  // namespace turbine::dist
