// What the multi-rank dist tests share: MPI for the whole test program, the
// devices to run each case on (the CPU, and this rank's GPU where every rank
// of the node has one: NCCL refuses two ranks on one GPU) with a world
// group on each, and a rank's part of a serially
// computed tensor.
#pragma once

#include <boost/test/unit_test.hpp>
#include <cmath>
#include <vector>

#include "dist/process_group.hpp"
#include "tensor/tensor.hpp"
#include "test_util.hpp"  // normalized_error

namespace turbine::testing {

struct MpiFixture {
  dist::MpiSession session{nullptr, nullptr};
};

inline std::vector<Device> dist_test_devices() {
  std::vector<Device> devices{Device::cpu()};
  const dist::Communicator node = dist::Communicator::world().node_local();
  if (kernels::cuda_device_count() >= node.size())
    devices.push_back(Device::cuda(node.rank()));
  else if (kernels::cuda_device_count() > 0)
    BOOST_TEST_MESSAGE("GPU cases skipped: " << node.size() << " ranks on this node, "
                                             << kernels::cuda_device_count() << " GPU(s)");
  return devices;
}

// Runs body(group, device) on each test device, with a world group there.
template <class Body>
void on_each_device(Body body) {
  for (Device device : dist_test_devices()) {
    BOOST_TEST_CONTEXT("on " << device.str()) {
      dist::ProcessGroup group(dist::Communicator::world(), device);
      body(group, device);
    }
  }
}

// Part `rank` of `ranks` equal parts of x along dim, as a contiguous copy
// made element-run by element-run (the serial reference, independent of the
// block transposes the collectives use).
inline Tensor part_of(const Tensor& x, int dim, int rank, int ranks) {
  const int64_t n = x.dim(dim) / ranks;
  return x.narrow(dim, rank * n, n).contiguous();
}

}  // namespace turbine::testing
