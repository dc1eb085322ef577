// Data parallelism with ZeRO (Rajbhandari et al. 2020) over a Communicator:
// every rank holds the whole model and computes gradients on its own
// micro-batches; then
//   stage 0: gradients are all-reduced in buckets, every rank runs AdamW on
//            everything;
//   stage 1: gradients are all-reduced in buckets, each rank runs AdamW on
//            its 1/N shard (optimizer state partitioned), parameters are
//            all-gathered;
//   stage 2: gradients are reduce-scattered so each rank receives only its
//            shard's sum, then as stage 1.
// Gradients are averaged over ranks; clipping uses the global norm. With
// the parameters on a GPU the buffer collectives run over NCCL (MPI still
// carries the scalars).
#pragma once

#include <memory>
#include <vector>

#include "dist/communicator.hpp"
#include "dist/nccl_communicator.hpp"
#include "optim/adamw.hpp"

namespace turbine::dist {

struct ZeroConfig {
  int stage = 0;
  int64_t bucket_elements = 50'000'000;  // allreduce bucket size (DeepSpeed: allreduce_bucket_size)
  // Start reducing each bucket as soon as backward has finished its
  // gradients, while backward goes on (DeepSpeed: overlap_comm).
  bool overlap_comm = false;
};

struct MemoryPlan {
  int64_t parameter_bytes = 0, gradient_bytes = 0, optimizer_bytes = 0;
  int64_t total() const { return parameter_bytes + gradient_bytes + optimizer_bytes; }
};

class DataParallelOptimizer {
 public:
  DataParallelOptimizer(Communicator& comm, const nn::ParameterList& params,
                        optim::AdamWConfig config, ZeroConfig zero);

  void zero_grad() { flat_->zero_grads(); }
  // Backward of this rank's last micro-batch before step(): with
  // overlap_comm (and more than one rank) each gradient bucket's reduction
  // starts as soon as backward has completed it; otherwise plain backward.
  void backward_and_reduce(const Tensor& loss, const Tensor& seed);
  struct StepResult {
    double grad_norm = 0;  // global norm before clipping (NaN when skipped)
    bool applied = true;   // false: the gradients overflowed, nothing changed
  };
  // After the backward passes of this rank's micro-batches (gradients summed
  // into the flat buffer): averages over ranks, clips to clip_norm (<= 0: no
  // clipping) and updates. loss_scale: the factor the loss was multiplied by
  // (fp16); it is divided out, and a step with any non-finite gradient on
  // any rank is skipped (applied = false) instead of failing.
  StepResult step(float lr, double clip_norm, double loss_scale = 1.0);

  MemoryPlan memory_plan() const;
  const ZeroConfig& zero() const { return zero_; }
  optim::AdamW& optimizer() { return *adamw_; }
  optim::FlatParameters& flat() { return *flat_; }
  Communicator& comm() { return comm_; }
  // The byte counters of the GPU collectives (zero when the parameters are
  // in host memory: comm() counts those).
  CommStats device_stats() const;

 private:
  Communicator& comm_;
  ZeroConfig zero_;
  std::unique_ptr<optim::FlatParameters> flat_;
  std::unique_ptr<optim::AdamW> adamw_;
  std::unique_ptr<NcclCommunicator> nccl_;  // when the parameters are on a GPU
  BufferCollectives* buffers_;              // nccl_, or comm_ for host memory
  std::vector<std::shared_ptr<AutogradMeta>> leaves_;  // the parameters, flat order
  bool reduced_ = false;  // backward_and_reduce started this step's reductions

  // Bucket [begin, end) of the flat gradients: summed over ranks (stages 0,
  // 1) or onto the owners of its parts (stage 2).
  void reduce_bucket(int64_t begin, int64_t end, bool overlapped);
};

}  // namespace turbine::dist
