// Small helpers the Boost.Test suites share: a scratch folder, the text of
// the turbine::Error an action throws, the devices to run a test on, random
// token ids, the normalized error of two tensors, closeness to golden values.
#pragma once

#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "tensor/tensor.hpp"

namespace turbine::testing {

// A fresh folder under the system's temp directory, removed afterwards.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name) {
    path = std::filesystem::temp_directory_path() /
           ("turbine_test_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// The path of a committed golden file (tests/golden/NAME) under
// TURBINE_SOURCE_ROOT (the source tree; "." when unset).
inline std::string golden(const std::string& name) {
  const char* root = std::getenv("TURBINE_SOURCE_ROOT");
  return std::string(root ? root : ".") + "/tests/golden/" + name;
}

// A tensor's values on the host, as f32.
inline std::vector<float> floats(const Tensor& t) {
  return t.to(Device::cpu()).contiguous().to_vector<float>();
}

// A tensor's values on the host, as i64.
inline std::vector<int64_t> ints(const Tensor& t) {
  return t.to(DType::i64).to_vector<int64_t>();
}

// A contiguous f32 copy of `t` that records gradients (a leaf to back-propagate to).
inline Tensor trainable(const Tensor& t) {
  Tensor copy = t.to(DType::f32).contiguous().clone();
  copy.set_requires_grad(true);
  return copy;
}

// Checks `got` against a reference `want` (a golden file's): |got - want| <=
// tol x max(1, |want|), absolute for small values and relative for large
// ones. Logs the largest absolute difference (--log_level=message).
inline void check_close(const std::string& what, std::span<const float> got,
                        std::span<const float> want, double tol) {
  BOOST_TEST_CONTEXT(what) {
    BOOST_REQUIRE_EQUAL(got.size(), want.size());
    double worst_abs = 0, worst_scaled = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double d = std::abs(double(got[i]) - double(want[i]));
      worst_abs = std::max(worst_abs, d);
      worst_scaled = std::max(worst_scaled, d / std::max(1.0, std::abs(double(want[i]))));
    }
    BOOST_TEST_MESSAGE(what << ": max abs difference " << worst_abs);
    BOOST_TEST(worst_scaled <= tol);
  }
}

inline void check_close(const std::string& what, const Tensor& got, const Tensor& want,
                        double tol) {
  check_close(what, floats(got), floats(want), tol);
}

// The message of the turbine::Error `action` throws, or "(no error)".
inline std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// The CPU, and cuda:0 when there is one (the emulated GPU in an
// emulate_cuda build).
inline std::vector<Device> test_devices() {
  std::vector<Device> out = {Device::cpu()};
  if (kernels::cuda_device_count() > 0) out.push_back(Device::cuda(0));
  return out;
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// (batch, seq) i64 ids in [0, vocab), from Philox stream `stream` of `seed`.
inline Tensor random_ids(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed,
                         uint64_t stream) {
  std::vector<int64_t> ids(size_t(batch * seq));
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = int64_t(philox_uniform(seed, stream, 0, i) * double(vocab)) % vocab;
  return Tensor::from_vector<int64_t>({batch, seq}, ids);
}

// ||a - b|| / ||b|| (0 when both are zero), on host copies.
inline double normalized_error(const Tensor& a, const Tensor& b) {
  BOOST_TEST_REQUIRE(a.shape() == b.shape(), a.str() << " vs " << b.str());
  const std::vector<float> x = a.to(Device::cpu()).contiguous().to_vector<float>();
  const std::vector<float> y = b.to(Device::cpu()).contiguous().to_vector<float>();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    diff += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    norm += double(y[i]) * y[i];
  }
  return norm == 0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

}  // namespace turbine::testing
