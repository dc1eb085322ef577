// Names of the CPU GEMM kernel in use.
#include "kernels/cpu/gemm_kernel.hpp"

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.h>

#include "kernels/cpu/cpu_backend.hpp"

namespace turbine::kernels {

std::string onednn_isa_name() {
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41:
      return "sse41";
    case dnnl_cpu_isa_avx:
      return "avx";
    case dnnl_cpu_isa_avx2:
      return "avx2";
    case dnnl_cpu_isa_avx2_vnni:
      return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core:
      return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx:
      return "avx512_core_amx";
    default:
      return "other";
  }
}

std::string cpu_gemm_kernel_name() {
  const dnnl_version_t* v = dnnl_version();
  return fmt::format("oneDNN {}.{}.{} dnnl_sgemm ({}){}", v->major, v->minor, v->patch,
                     onednn_isa_name(), native_bf16_gemm() ? ", bf16 mode: bf16 matmul" : "");
}

}  // namespace turbine::kernels
