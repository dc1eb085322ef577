// ProcessGroup: one group of ranks (tensor-parallel, sequence-parallel,
// data-parallel, or the world) as an explicit object that the tensor
// collectives take, never a global. It owns an MPI communicator for host
// tensors and, when built for a GPU, an NCCL communicator over the same ranks
// for device tensors; collectives pick one by the tensor's device.
#pragma once

#include <memory>
#include <string>

#include "dist/communicator.hpp"
#include "dist/nccl_communicator.hpp"
#include "tensor/dtype.hpp"

namespace turbine::dist {

class ProcessGroup {
 public:
  // A group over `comm`'s ranks. With a CUDA `device` (this rank's GPU) it
  // also creates the NCCL communicator, which is collective: every rank of
  // comm constructs its group together, each with its own GPU.
  explicit ProcessGroup(Communicator comm, Device device = Device::cpu());

  int rank() const { return comm_.rank(); }
  int size() const { return comm_.size(); }
  const std::string& name() const { return comm_.name(); }
  // The GPU this group serves besides host memory (cpu when none).
  Device device() const { return device_; }

  // MPI, for host buffers and for scalars.
  Communicator& host() { return comm_; }
  // The collectives for buffers on `device`: MPI for the CPU, NCCL for the
  // group's GPU; an error naming the fix for any other device.
  BufferCollectives& buffers(Device device);

  // Bytes by collective over MPI and NCCL together.
  CommStats stats() const;

 private:
  Communicator comm_;
  Device device_;
  std::unique_ptr<NcclCommunicator> nccl_;
};

}  // namespace turbine::dist
