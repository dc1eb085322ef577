// main() of a Boost.Test module whose cases need cuda:0 (define
// BOOST_TEST_NO_MAIN before including Boost.Test): without a CUDA device it
// prints SKIP and exits 77, which meson reports as SKIP.
#pragma once

#include <boost/test/unit_test.hpp>
#include <cstdio>

#include "kernels/backend.hpp"

int main(int argc, char* argv[]) {
  if (turbine::kernels::cuda_device_count() == 0) {
    std::printf(
        "SKIP: no CUDA device (cuda_device_count() is 0: no GPU or driver here, or a build "
        "without the CUDA backend)\n");
    return 77;
  }
  return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}
