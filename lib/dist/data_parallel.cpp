// Gradient reduction, clipping and the (sharded) AdamW step.
#include "dist/data_parallel.hpp"

#include <cmath>

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
  // Every rank starts from rank 0's weights.
  if (comm.size() > 1) {
    if (nccl_)
      nccl_->broadcast(flat_->values().raw_data(), flat_->values().nbytes(), 0);
    else
      comm_.broadcast(flat_->values().raw_data(), flat_->values().nbytes(), 0);
  }
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
    if (zero_.stage == 2) {
      if (nccl_)
        nccl_->reduce_scatter_sum_inplace(grads, total / world);
      else
        comm_.reduce_scatter_sum_inplace(grads, total / world);
    } else {
      for (int64_t at = 0; at < total; at += zero_.bucket_elements) {
        const int64_t n = std::min(zero_.bucket_elements, total - at);
        if (nccl_)
          nccl_->allreduce_sum(grads + at, n);
        else
          comm_.allreduce_sum(grads + at, n);
      }
    }
  }
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
  if (zero_.stage > 0 && world > 1) {
    if (nccl_)
      nccl_->allgather_inplace(flat_->values().data<float>(), total / world);
    else
      comm_.allgather_inplace(flat_->values().data<float>(), total / world);
  }
  return {norm, true};
}

MemoryPlan DataParallelOptimizer::memory_plan() const {
  return {int64_t(flat_->values().nbytes()), int64_t(flat_->grads().nbytes()),
          adamw_->state_bytes()};
}

}  // namespace turbine::dist
