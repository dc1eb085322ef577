// DeepSpeed-Ulysses: layout, exchange, batch slices and traffic formulas.
#include "seqpar/ulysses.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "dist/differentiable_collectives.hpp"

namespace turbine::seqpar {

std::optional<std::string> Layout::problem(int world_size, int sequence_parallel) {
  if (sequence_parallel >= 1 && world_size % sequence_parallel == 0) return std::nullopt;
  return fmt::format(
      "sequence_parallel_size {} does not divide the {} ranks: launch a multiple of it (mpirun "
      "-np = sequence_parallel_size x data-parallel size)",
      sequence_parallel, world_size);
}

Layout Layout::of(int world_rank, int world_size, int sequence_parallel) {
  if (const auto why = problem(world_size, sequence_parallel)) TURBINE_FAIL("{}", *why);
  Layout l;
  l.sequence_parallel = sequence_parallel;
  l.data_parallel = world_size / sequence_parallel;
  l.sp_rank = world_rank % sequence_parallel;
  l.dp_rank = world_rank / sequence_parallel;
  return l;
}

Tensor UlyssesExchange::to_heads(const Tensor& qkv) const {
  return dist::sequence_to_head_shards(group_, qkv);
}

Tensor UlyssesExchange::to_sequence(const Tensor& context) const {
  return dist::head_to_sequence_shards(group_, context);
}

namespace {
// A (B, T) tensor of ids as i64 values in host memory.
std::vector<int64_t> host_values(const Tensor& x) {
  return ops::to_index(x.to(Device::cpu()), "slice_batch").to_vector<int64_t>();
}

// The columns [first, first + count) of each row of (rows, seq) values, as
// a tensor, padded past seq with `pad`.
Tensor columns(const std::vector<int64_t>& all, int64_t rows, int64_t seq, int64_t first,
               int64_t count, int64_t pad) {
  std::vector<int64_t> out(size_t(rows * count), pad);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < count && first + c < seq; ++c)
      out[size_t(r * count + c)] = all[size_t(r * seq + first + c)];
  return Tensor::from_vector<int64_t>({rows, count}, out);
}
}  // namespace

SequenceSlice slice_batch(const data::Batch& batch, int rank, int size) {
  TURBINE_CHECK(batch.ids.ndim() == 2 && batch.targets.shape() == batch.ids.shape(),
                "slice_batch: ids {} and targets {} must be (batch, seq)", batch.ids.str(),
                batch.targets.str());
  const int64_t rows = batch.ids.dim(0), seq = batch.ids.dim(1);
  const int64_t local = (seq + size - 1) / size;  // padded to a multiple of the group
  const std::vector<int64_t> targets = host_values(batch.targets);
  SequenceSlice s;
  s.ids = columns(host_values(batch.ids), rows, seq, rank * local, local, 0);
  s.targets = columns(targets, rows, seq, rank * local, local, -100);
  s.counted = std::count_if(targets.begin(), targets.end(), [](int64_t t) { return t != -100; });
  return s;
}

LayerTraffic ulysses_layer_bytes(int64_t tokens, int64_t hidden, int p, int64_t element_bytes) {
  const int64_t per_pass = (3 + 1) * tokens * hidden / p * element_bytes;
  return {per_pass, per_pass};
}

LayerTraffic megatron_sp_layer_bytes(int64_t tokens, int64_t hidden, int /*p*/,
                                     int64_t element_bytes) {
  const int64_t per_pass = 4 * tokens * hidden * element_bytes;
  return {per_pass, per_pass};
}

LayerTraffic ring_attention_layer_bytes(int64_t tokens, int64_t hidden, int p,
                                        int64_t element_bytes) {
  const int64_t kv = 2 * tokens * hidden / p * element_bytes;
  return {kv * (p - 1), 2 * kv * (p - 1)};
}

}  // namespace turbine::seqpar
