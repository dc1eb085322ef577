// Gradient reduction, clipping and the (sharded) AdamW step.
#include "dist/data_parallel.hpp"

#include <cmath>

#include "autograd/tape.hpp"
#include "core/error.hpp"

namespace turbine::dist {

DataParallelOptimizer::DataParallelOptimizer(Communicator& comm, const nn::ParameterList& params,
                                             optim::AdamWConfig config, ZeroConfig zero)
    : comm_(comm), zero_(zero) {
  TURBINE_CHECK(zero.stage >= 0 && zero.stage <= 2,
                "zero_optimization.stage {} is not supported: use 0, 1 or 2", zero.stage);
  TURBINE_CHECK(zero.bucket_elements > 0, "zero_optimization bucket size must be positive");
  flat_ = std::make_unique<optim::FlatParameters>(params, comm.size());
  const Device device = flat_->values().device();
  if (device.is_cuda() && comm.size() > 1) nccl_ = std::make_unique<NcclCommunicator>(comm, device);
  buffers_ = nccl_ ? static_cast<BufferCollectives*>(nccl_.get()) : &comm_;
  // Every rank starts from rank 0's weights.
  if (comm.size() > 1) buffers_->broadcast(flat_->values().raw_data(), flat_->values().nbytes(), 0);
  for (const nn::Parameter& p : params) leaves_.push_back(p.tensor.autograd_meta());
  if (zero.stage == 0) {
    adamw_ = std::make_unique<optim::AdamW>(*flat_, config);
  } else {
    const auto [begin, end] = flat_->shard(comm.rank(), comm.size());
    adamw_ = std::make_unique<optim::AdamW>(*flat_, config, begin, end);
  }
}

DataParallelOptimizer::StepResult DataParallelOptimizer::step(float lr, double clip_norm,
                                                              double loss_scale) {
  float* grads = flat_->grads().data<float>();
  const int64_t total = flat_->padded_numel();
  const int64_t begin = adamw_->begin(), count = adamw_->end() - adamw_->begin();
  kernels::Backend& be = backend_for(flat_->grads().device());
  const int world = comm_.size();

  // Sum over ranks: the whole buffer (stages 0, 1) or this rank's shard (2).
  if (world > 1) {
    if (reduced_) {
      buffers_->wait_all();
    } else if (zero_.stage == 2) {
      buffers_->reduce_scatter_sum_inplace(grads, total / world);
    } else {
      for (int64_t at = 0; at < total; at += zero_.bucket_elements)
        reduce_bucket(at, std::min(total, at + zero_.bucket_elements), false);
    }
  }
  reduced_ = false;
  // The range this rank's norm and update look at.
  const int64_t lo = zero_.stage == 2 ? begin : 0, n = zero_.stage == 2 ? count : total;
  if (loss_scale != 1.0) {
    // Divide the scale out (and the sum over ranks), checking for overflow.
    const bool finite = be.unscale_and_check(grads + lo, n, static_cast<float>(1.0 / loss_scale));
    if (comm_.any(!finite)) return {NAN, false};
  }
  double sum_squares = be.sum_squares(grads + lo, n);
  if (zero_.stage == 2) comm_.allreduce_sum(&sum_squares, 1);
  // Norm of the average = norm of the sum / world.
  const double norm = std::sqrt(sum_squares) / world;
  const double factor = optim::clip_coefficient(norm, clip_norm) / world;
  if (factor != 1.0)
    be.scale(grads + begin, grads + begin, count, static_cast<float>(factor), false);

  adamw_->step(lr);
  if (zero_.stage > 0 && world > 1)
    buffers_->allgather_inplace(flat_->values().data<float>(), total / world);
  return {norm, true};
}

void DataParallelOptimizer::reduce_bucket(int64_t begin, int64_t end, bool overlapped) {
  float* grads = flat_->grads().data<float>();
  if (zero_.stage < 2) {
    if (overlapped)
      buffers_->start_allreduce_sum(grads + begin, end - begin);
    else
      buffers_->allreduce_sum(grads + begin, end - begin);
    return;
  }
  // Stage 2 (overlapped only): each part goes to the rank whose shard holds it.
  const int64_t shard = flat_->padded_numel() / comm_.size();
  for (int64_t at = begin; at < end;) {
    const int owner = static_cast<int>(at / shard);
    const int64_t stop = std::min(end, (owner + 1) * shard);
    buffers_->start_reduce_sum(grads + at, stop - at, owner);
    at = stop;
  }
}

void DataParallelOptimizer::backward_and_reduce(const Tensor& loss, const Tensor& seed) {
  if (!zero_.overlap_comm || comm_.size() == 1) {
    autograd::backward(loss, seed);
    return;
  }
  // Buckets of the flat buffer, each started once every parameter overlapping
  // it is complete. Backward finishes the last layers first, so buckets are
  // cut from the end and usually start in that order; every rank runs the
  // same tape, so the collectives start in the same order everywhere.
  const int64_t total = flat_->padded_numel();
  struct Bucket {
    int64_t begin, end;
    int waiting = 0;  // parameters not yet complete
  };
  std::vector<Bucket> buckets;
  for (int64_t end = total; end > 0; end -= zero_.bucket_elements)
    buckets.push_back({std::max<int64_t>(0, end - zero_.bucket_elements), end});
  const auto& segments = flat_->segments();
  std::vector<std::vector<size_t>> buckets_of(segments.size());
  for (size_t b = 0; b < buckets.size(); ++b)
    for (size_t i = 0; i < segments.size(); ++i)
      if (segments[i].offset < buckets[b].end &&
          segments[i].offset + segments[i].numel > buckets[b].begin) {
        buckets_of[i].push_back(b);
        ++buckets[b].waiting;
      }
  size_t started = 0;
  auto start = [&](Bucket& bucket) {
    reduce_bucket(bucket.begin, bucket.end, true);
    ++started;
  };
  for (Bucket& bucket : buckets)  // padding only
    if (bucket.waiting == 0) start(bucket);
  autograd::GradReadyWatch watch{leaves_, [&](size_t leaf) {
                                   for (size_t b : buckets_of[leaf])
                                     if (--buckets[b].waiting == 0) start(buckets[b]);
                                 }};
  autograd::backward(loss, seed, &watch);
  TURBINE_CHECK(started == buckets.size(), "overlap_comm: {} of {} gradient buckets reduced",
                started, buckets.size());
  reduced_ = true;
}

MemoryPlan DataParallelOptimizer::memory_plan() const {
  return {int64_t(flat_->values().nbytes()), int64_t(flat_->grads().nbytes()),
          adamw_->state_bytes()};
}

CommStats DataParallelOptimizer::device_stats() const {
  return nccl_ ? nccl_->stats() : CommStats{};
}

}  // namespace turbine::dist
