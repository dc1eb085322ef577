// BLOOM against the PyTorch reference on the CPU (the comparison itself is in
// bloom_golden.hpp, shared with test_bloom_golden_cuda): logits, loss, every
// gradient, and ten AdamW steps with warmup + cosine and gradient clipping.
#define BOOST_TEST_MODULE bloom_golden
#include <boost/test/unit_test.hpp>

#include "bloom_golden.hpp"

using namespace turbine;
using kernels::MathMode;

BOOST_AUTO_TEST_CASE(logits_loss_and_gradients_match_pytorch) {
  testing::check_logits_loss_and_gradients(Device::cpu(), MathMode::f32, {});
}

BOOST_AUTO_TEST_CASE(ten_adamw_steps_match_pytorch) {
  testing::check_ten_adamw_steps(Device::cpu(), MathMode::f32, 1e-5, 1e-4);
}

// The CPU's emulation of bf16 math (GEMM and attention inputs rounded to bf16,
// f32 accumulation) against the f32 reference, with the limits the GPU's bf16
// run is held to.
BOOST_AUTO_TEST_CASE(bf16_math_logits_loss_and_gradients_match_pytorch) {
  testing::check_logits_loss_and_gradients(Device::cpu(), MathMode::bf16, testing::kBf16Tolerance);
}
