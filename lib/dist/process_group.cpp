// ProcessGroup: the MPI communicator and, on a GPU, its NCCL twin.
#include "dist/process_group.hpp"

#include "core/error.hpp"

namespace turbine::dist {

ProcessGroup::ProcessGroup(Communicator comm, Device device)
    : comm_(std::move(comm)), device_(device) {
  // Also for one rank: device buffers must never reach MPI, which would
  // read them as host memory.
  if (device.is_cuda()) nccl_ = std::make_unique<NcclCommunicator>(comm_, device);
}

BufferCollectives& ProcessGroup::buffers(Device device) {
  if (device.is_cpu()) return comm_;
  TURBINE_CHECK(nccl_ && device == device_,
                "process group {}: a collective on a tensor on {}, but the group was built for "
                "{}: build it with ProcessGroup(comm, Device::parse(\"{}\")) on every rank",
                name(), device.str(), device_.str(), device.str());
  return *nccl_;
}

CommStats ProcessGroup::stats() const {
  CommStats total = comm_.stats();
  if (nccl_) total += nccl_->stats();
  return total;
}

}  // namespace turbine::dist
