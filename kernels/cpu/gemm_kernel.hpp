// Which library and code path the CPU backend's GEMM runs, for the line a job
// prints at its start and for benchmarks.
#pragma once

#include <string>

namespace turbine::kernels {

// E.g. "oneDNN 2.6.3 dnnl_sgemm (avx512_core_bf16)".
std::string cpu_gemm_kernel_name();
// The instruction set oneDNN dispatches to here, e.g. "avx512_core_bf16"
// (lowered by ONEDNN_MAX_CPU_ISA).
std::string onednn_isa_name();

}  // namespace turbine::kernels
