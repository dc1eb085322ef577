// The emulated cuBLASLt and cuBLAS: descriptors, the heuristic, and one GEMM
// engine behind cublasLtMatmul and cublasGemmStridedBatchedEx. Semantics
// follow the cuBLAS documentation, not any caller: D = alpha op(A) op(B) +
// beta C per batch, layouts describe the stored matrix before op, C is not
// read when beta == 0, products are accumulated in double and the epilogue
// rounds once to the output type. The FAST compute types round the f32
// inputs first (bf16, f16 or TF32, round to nearest even), as the tensor
// cores' down-conversion does. Misuse fails with the library's status and a
// diagnostic on stderr.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "host_float16.hpp"
#include "host_internal.hpp"

struct cublasLtContext {
  int device;
};

struct cublasContext {
  int device;
  cudaStream_t stream = nullptr;
  cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
};

struct cublasLtMatrixLayoutOpaque_t {
  uint32_t type;
  int32_t order = CUBLASLT_ORDER_COL;
  uint64_t rows;
  uint64_t cols;
  int64_t ld;
  int32_t batch = 1;
  int64_t stride = 0;
  int64_t plane_offset = 0;
};

struct cublasLtMatmulDescOpaque_t {
  int32_t compute;
  int32_t scale;
  int32_t pointer_mode = CUBLASLT_POINTER_MODE_HOST;
  int32_t transa = CUBLAS_OP_N;
  int32_t transb = CUBLAS_OP_N;
  int32_t transc = CUBLAS_OP_N;
  int32_t fill_mode = 2;  // CUBLAS_FILL_MODE_FULL
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
};

struct cublasLtMatmulPreferenceOpaque_t {
  uint32_t search_mode = 0;
  uint64_t max_workspace = 0;
  uint32_t reduction_mask = 0x7;
  uint32_t min_alignment[4] = {256, 256, 256, 256};  // A, B, C, D
  float max_waves = 0.0f;
};

namespace turbine_emu {
namespace {

constexpr uint64_t kAlgoMagic = 0x4f474c41554d4554ull;  // "TEMUALGO"
constexpr size_t kAlgoWorkspace = size_t(1) << 20;
constexpr uint32_t kAlgoAlignment = 16;

// Live objects of one kind; destroyed ones are kept so that a stale handle
// never aliases a new object.
template <class T>
struct Objects {
  std::mutex mutex;
  std::set<const T*> live;
  std::vector<std::unique_ptr<T>> storage;

  T* add(std::unique_ptr<T> object) {
    std::lock_guard lock(mutex);
    storage.push_back(std::move(object));
    live.insert(storage.back().get());
    return storage.back().get();
  }
  bool valid(const T* object) {
    std::lock_guard lock(mutex);
    return object != nullptr && live.count(object) != 0;
  }
  bool remove(const T* object) {
    std::lock_guard lock(mutex);
    return object != nullptr && live.erase(object) != 0;
  }
};

// Never destroyed: handles may be destroyed during exit, by static owners.
template <class T>
Objects<T>& objects() {
  static Objects<T>& o = *new Objects<T>;
  return o;
}

using Layout = cublasLtMatrixLayoutOpaque_t;

const char* status_name(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "<unknown>";
}

const char* status_string(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "the operation completed successfully";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "an error detected when checking the current licensing";
  }
  return "unknown error";
}

// diagnose() for a status: prints why, returns the status.
template <class... Args>
cublasStatus_t refuse(cublasStatus_t status, const char* api, const char* format, Args... args) {
  std::string line = std::string(status_name(status)) + ": " + format;
  diagnose(api, line.c_str(), args...);
  return status;
}

size_t element_bytes(uint32_t type) {
  switch (type) {
    case CUDA_R_32F:
      return 4;
    case CUDA_R_16F:
    case CUDA_R_16BF:
      return 2;
    default:
      return 0;
  }
}

float load(const void* base, int64_t index, uint32_t type) {
  switch (type) {
    case CUDA_R_32F:
      return static_cast<const float*>(base)[index];
    case CUDA_R_16F:
      return f16_to_f32(static_cast<const uint16_t*>(base)[index]);
    default:
      return bf16_to_f32(static_cast<const uint16_t*>(base)[index]);
  }
}

void store(void* base, int64_t index, uint32_t type, float value) {
  switch (type) {
    case CUDA_R_32F:
      static_cast<float*>(base)[index] = value;
      break;
    case CUDA_R_16F:
      static_cast<uint16_t*>(base)[index] = f32_to_f16(value);
      break;
    default:
      static_cast<uint16_t*>(base)[index] = f32_to_bf16(value);
      break;
  }
}

// Element (r, c) of batch b, in elements from the matrix pointer.
int64_t offset(const Layout& l, int64_t r, int64_t c, int64_t b) {
  const int64_t in_matrix = l.order == CUBLASLT_ORDER_COL ? r + c * l.ld : r * l.ld + c;
  return b * l.stride + in_matrix;
}

// Elements one matrix spans, from its first to past its last.
int64_t matrix_extent(const Layout& l) {
  if (l.rows == 0 || l.cols == 0) return 0;
  const int64_t inner = int64_t(l.order == CUBLASLT_ORDER_COL ? l.rows : l.cols);
  const int64_t outer = int64_t(l.order == CUBLASLT_ORDER_COL ? l.cols : l.rows);
  return (outer - 1) * l.ld + inner;
}

// Whether every element of every batch of `l` at p lies in one device
// allocation.
bool on_device(const void* p, const Layout& l) {
  const int64_t extent = matrix_extent(l);
  if (extent == 0) return true;
  const int64_t last = l.stride * (l.batch - 1);
  const int64_t lo = std::min<int64_t>(0, last);
  const int64_t hi = std::max<int64_t>(0, last) + extent;
  const size_t size = element_bytes(l.type);
  const auto* start = static_cast<const char*>(p) + lo * int64_t(size);
  return p != nullptr && is_device_range(start, size_t(hi - lo) * size);
}

uint32_t alignment_of(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && address % a != 0) a /= 2;
  return a;
}

// The input rounding a compute type applies to f32 operands.
enum class Rounding { none, bf16, f16, tf32 };

// One validated GEMM, in the terms of cublasLtMatmul.
struct Problem {
  int64_t m = 0, n = 0, k = 0, batch = 1;
  bool trans_a = false, trans_b = false;
  Layout a{}, b{}, c{}, d{};
  Rounding rounding = Rounding::none;
  bool device_scalars = false;
};

const char* type_name(uint32_t type) {
  switch (type) {
    case CUDA_R_32F:
      return "CUDA_R_32F";
    case CUDA_R_16F:
      return "CUDA_R_16F";
    case CUDA_R_16BF:
      return "CUDA_R_16BF";
  }
  return "an unsupported cudaDataType";
}

// The type combinations of the cuBLAS "cublasLtMatmul() / cublasGemmEx()
// datatypes" tables that the emulator supports (f32 compute and scale).
cublasStatus_t check_types(const char* api, int32_t compute, int32_t scale, uint32_t ab,
                           uint32_t b_type, uint32_t cd, uint32_t d_type, Rounding* rounding) {
  if (ab != b_type || cd != d_type)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED, api, "A/B types %s/%s, C/D types %s/%s differ",
                  type_name(ab), type_name(b_type), type_name(cd), type_name(d_type));
  if (scale != CUDA_R_32F)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED, api, "scale type %d: the emulator has only f32",
                  scale);
  switch (compute) {
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
      *rounding = Rounding::none;
      if ((ab == CUDA_R_32F && cd == CUDA_R_32F) ||
          ((ab == CUDA_R_16F || ab == CUDA_R_16BF) && (cd == ab || cd == CUDA_R_32F)))
        return CUBLAS_STATUS_SUCCESS;
      break;
    case CUBLAS_COMPUTE_32F_FAST_16BF:
    case CUBLAS_COMPUTE_32F_FAST_16F:
    case CUBLAS_COMPUTE_32F_FAST_TF32:
      *rounding = compute == CUBLAS_COMPUTE_32F_FAST_16BF  ? Rounding::bf16
                  : compute == CUBLAS_COMPUTE_32F_FAST_16F ? Rounding::f16
                                                           : Rounding::tf32;
      if (ab == CUDA_R_32F && cd == CUDA_R_32F) return CUBLAS_STATUS_SUCCESS;
      break;
    default:
      return refuse(CUBLAS_STATUS_NOT_SUPPORTED, api, "compute type %d is not emulated", compute);
  }
  return refuse(CUBLAS_STATUS_NOT_SUPPORTED, api,
                "compute type %d with A/B %s and C/D %s is no documented combination", compute,
                type_name(ab), type_name(cd));
}

cublasStatus_t check_layout(const char* api, const char* name, const Layout& l) {
  if (element_bytes(l.type) == 0)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED, api, "%s: type %u is not emulated", name, l.type);
  if (l.order != CUBLASLT_ORDER_COL && l.order != CUBLASLT_ORDER_ROW)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED, api, "%s: order %d is not emulated", name, l.order);
  if (l.plane_offset != 0)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED, api, "%s: planar complex layout", name);
  const uint64_t inner = l.order == CUBLASLT_ORDER_COL ? l.rows : l.cols;
  if (l.ld < 0 || uint64_t(l.ld) < std::max<uint64_t>(1, inner))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "%s: ld %lld < %s %llu (columns would overlap)",
                  name, static_cast<long long>(l.ld),
                  l.order == CUBLASLT_ORDER_COL ? "rows" : "cols",
                  static_cast<unsigned long long>(inner));
  if (l.rows > uint64_t(INT32_MAX) || l.cols > uint64_t(INT32_MAX))
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED, api, "%s: %llu x %llu exceeds int32", name,
                  static_cast<unsigned long long>(l.rows), static_cast<unsigned long long>(l.cols));
  if (l.batch < 1)
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "%s: batch count %d", name, l.batch);
  return CUBLAS_STATUS_SUCCESS;
}

// The shape checks cublasLtMatmul and the heuristic share.
cublasStatus_t make_problem(const char* api, const cublasLtMatmulDescOpaque_t& op, const Layout& a,
                            const Layout& b, const Layout& c, const Layout& d, Problem* p) {
  for (auto [l, name] : {std::pair{&a, "A"}, {&b, "B"}, {&c, "C"}, {&d, "D"}})
    if (const cublasStatus_t s = check_layout(api, name, *l)) return s;
  if (const cublasStatus_t s =
          check_types(api, op.compute, op.scale, a.type, b.type, c.type, d.type, &p->rounding))
    return s;
  for (int32_t t : {op.transa, op.transb})
    if (t != CUBLAS_OP_N && t != CUBLAS_OP_T && t != CUBLAS_OP_C)
      return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "operation %d", t);
  if (op.transc != CUBLAS_OP_N)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED, api, "TRANSC must be CUBLAS_OP_N");
  if (op.epilogue != CUBLASLT_EPILOGUE_DEFAULT)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED, api, "epilogue %u is not emulated", op.epilogue);
  if (op.pointer_mode != CUBLASLT_POINTER_MODE_HOST &&
      op.pointer_mode != CUBLASLT_POINTER_MODE_DEVICE)
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED, api, "pointer mode %d is not emulated",
                  op.pointer_mode);
  p->trans_a = op.transa != CUBLAS_OP_N;  // real types: C is T
  p->trans_b = op.transb != CUBLAS_OP_N;
  p->m = int64_t(p->trans_a ? a.cols : a.rows);
  p->k = int64_t(p->trans_a ? a.rows : a.cols);
  const int64_t kb = int64_t(p->trans_b ? b.cols : b.rows);
  p->n = int64_t(p->trans_b ? b.rows : b.cols);
  if (kb != p->k)
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api,
                  "op(A) is %lld x %lld but op(B) is %lld x %lld: inner dimensions differ",
                  static_cast<long long>(p->m), static_cast<long long>(p->k),
                  static_cast<long long>(kb), static_cast<long long>(p->n));
  for (auto [l, name] : {std::pair{&c, "C"}, {&d, "D"}})
    if (int64_t(l->rows) != p->m || int64_t(l->cols) != p->n)
      return refuse(
          CUBLAS_STATUS_INVALID_VALUE, api, "%s is %llu x %llu but op(A) op(B) is %lld x %lld",
          name, static_cast<unsigned long long>(l->rows), static_cast<unsigned long long>(l->cols),
          static_cast<long long>(p->m), static_cast<long long>(p->n));
  if (c.order != d.order) return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "C and D orders differ");
  if (a.batch != b.batch || a.batch != c.batch || a.batch != d.batch)
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "batch counts A %d, B %d, C %d, D %d differ",
                  a.batch, b.batch, c.batch, d.batch);
  p->batch = d.batch;
  // Batches of D that share elements are written concurrently on a GPU.
  if (d.batch > 1 && std::abs(d.stride) < matrix_extent(d))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api,
                  "D's batches overlap: stride %lld < one matrix's extent %lld",
                  static_cast<long long>(d.stride), static_cast<long long>(matrix_extent(d)));
  p->a = a;
  p->b = b;
  p->c = c;
  p->d = d;
  p->device_scalars = op.pointer_mode == CUBLASLT_POINTER_MODE_DEVICE;
  return CUBLAS_STATUS_SUCCESS;
}

float round_input(float x, Rounding r) {
  switch (r) {
    case Rounding::none:
      return x;
    case Rounding::bf16:
      return bf16_to_f32(f32_to_bf16(x));
    case Rounding::f16:
      return f16_to_f32(f32_to_f16(x));
    case Rounding::tf32:
      return round_to_tf32(x);
  }
  return x;
}

// The GEMM itself, on validated operands in device memory.
void compute(const Problem& p, float alpha, const void* A, const void* B, float beta, const void* C,
             void* D) {
  std::vector<float> a_rows(size_t(p.m * p.k));  // op(A) row i at i*k
  std::vector<float> b_cols(size_t(p.n * p.k));  // op(B) column j at j*k
  std::vector<float> result(size_t(p.m * p.n));
  for (int64_t batch = 0; batch < p.batch; ++batch) {
    for (int64_t i = 0; i < p.m; ++i)
      for (int64_t q = 0; q < p.k; ++q) {
        const int64_t e = p.trans_a ? offset(p.a, q, i, batch) : offset(p.a, i, q, batch);
        a_rows[size_t(i * p.k + q)] = round_input(load(A, e, p.a.type), p.rounding);
      }
    for (int64_t j = 0; j < p.n; ++j)
      for (int64_t q = 0; q < p.k; ++q) {
        const int64_t e = p.trans_b ? offset(p.b, j, q, batch) : offset(p.b, q, j, batch);
        b_cols[size_t(j * p.k + q)] = round_input(load(B, e, p.b.type), p.rounding);
      }
    for (int64_t j = 0; j < p.n; ++j)
      for (int64_t i = 0; i < p.m; ++i) {
        const float* x = &a_rows[size_t(i * p.k)];
        const float* y = &b_cols[size_t(j * p.k)];
        double acc = 0.0;
        for (int64_t q = 0; q < p.k; ++q) acc += double(x[q]) * double(y[q]);
        double value = double(alpha) * acc;
        if (beta != 0.0f)
          value += double(beta) * double(load(C, offset(p.c, i, j, batch), p.c.type));
        result[size_t(j * p.m + i)] = static_cast<float>(value);
      }
    // Written after C is read: C and D may be the same matrix.
    for (int64_t j = 0; j < p.n; ++j)
      for (int64_t i = 0; i < p.m; ++i)
        store(D, offset(p.d, i, j, batch), p.d.type, result[size_t(j * p.m + i)]);
  }
}

// Reads alpha / beta by pointer mode; false when a device scalar is not in
// device memory.
bool read_scalars(const char* api, const void* alpha, const void* beta, bool device, float* a,
                  float* b) {
  if (alpha == nullptr || beta == nullptr) {
    diagnose(api, "null alpha or beta");
    return false;
  }
  if (device != (is_device_range(alpha, 4) && is_device_range(beta, 4))) {
    diagnose(api, "alpha %p / beta %p are not in %s memory (pointer mode %s)", alpha, beta,
             device ? "device" : "host", device ? "DEVICE" : "HOST");
    return false;
  }
  std::memcpy(a, alpha, 4);
  std::memcpy(b, beta, 4);
  return true;
}

// The checks a GPU launch would fail, then the GEMM: pointers in device
// memory (C only when beta != 0: it is not read then), a live stream of the
// current device.
cublasStatus_t run(const char* api, const Problem& p, const void* alpha, const void* A,
                   const void* B, const void* beta, const void* C, void* D, cudaStream_t stream) {
  const int device = stream_device(stream);
  if (device < 0 || device != current_device()) {
    set_last_error(cudaErrorInvalidResourceHandle);
    return refuse(CUBLAS_STATUS_EXECUTION_FAILED, api,
                  device < 0 ? "stream %p was destroyed or never created"
                             : "stream %p belongs to another device than the current",
                  static_cast<void*>(stream));
  }
  float a = 0, b = 0;
  if (!read_scalars(api, alpha, beta, p.device_scalars, &a, &b))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "alpha / beta");
  const bool read_c = b != 0.0f && p.k >= 0;
  for (auto [ptr, l, name, used] :
       {std::tuple{A, &p.a, "A", p.k > 0}, std::tuple{B, &p.b, "B", p.k > 0},
        std::tuple{C, &p.c, "C", read_c}, std::tuple{static_cast<const void*>(D), &p.d, "D", true}})
    if (used && !on_device(ptr, *l)) {
      set_last_error(cudaErrorIllegalAddress);
      return refuse(CUBLAS_STATUS_EXECUTION_FAILED, api,
                    "matrix %s (%llu x %llu, ld %lld, batch %d, stride %lld) at %s is not in "
                    "device memory",
                    name, static_cast<unsigned long long>(l->rows),
                    static_cast<unsigned long long>(l->cols), static_cast<long long>(l->ld),
                    l->batch, static_cast<long long>(l->stride), describe_range(ptr, 0).c_str());
    }
  compute(p, a, A, B, b, C, D);
  return CUBLAS_STATUS_SUCCESS;
}

struct AlgoInfo {
  uint32_t alignment[4];  // A, B, C, D: what the algorithm needs
  uint64_t workspace;
  uint64_t signature;
};

uint64_t signature(const cublasLtMatmulDescOpaque_t& op, const Problem& p) {
  return uint64_t(uint32_t(op.compute)) | uint64_t(p.a.type & 0xff) << 32 |
         uint64_t(p.b.type & 0xff) << 40 | uint64_t(p.c.type & 0xff) << 48 |
         uint64_t(p.d.type & 0xff) << 56;
}

cublasLtMatmulAlgo_t encode(const AlgoInfo& info) {
  cublasLtMatmulAlgo_t algo{};
  algo.data[0] = kAlgoMagic;
  for (int i = 0; i < 4; ++i) algo.data[1 + i] = info.alignment[i];
  algo.data[5] = info.workspace;
  algo.data[6] = info.signature;
  return algo;
}

}  // namespace
}  // namespace turbine_emu

using namespace turbine_emu;

const char* cublasGetStatusName(cublasStatus_t status) {
  return status_name(status);
}
const char* cublasGetStatusString(cublasStatus_t status) {
  return status_string(status);
}
const char* cublasLtGetStatusName(cublasStatus_t status) {
  return status_name(status);
}
const char* cublasLtGetStatusString(cublasStatus_t status) {
  return status_string(status);
}

// cuBLASLt: handles and descriptors -------------------------------------

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  if (handle == nullptr) return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasLtCreate", "null");
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
    return refuse(CUBLAS_STATUS_NOT_INITIALIZED, "cublasLtCreate", "no device");
  *handle = objects<cublasLtContext>().add(
      std::make_unique<cublasLtContext>(cublasLtContext{current_device()}));
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  if (!objects<cublasLtContext>().remove(handle))
    return refuse(CUBLAS_STATUS_NOT_INITIALIZED, "cublasLtDestroy",
                  "handle %p was destroyed or never created", static_cast<void*>(handle));
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  if (layout == nullptr)
    return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatrixLayoutCreate", "null layout");
  auto l = std::make_unique<Layout>();
  l->type = type;
  l->rows = rows;
  l->cols = cols;
  l->ld = ld;
  *layout = objects<Layout>().add(std::move(l));
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
  if (!objects<Layout>().remove(layout))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatrixLayoutDestroy",
                  "layout %p was destroyed or never created", static_cast<void*>(layout));
  return CUBLAS_STATUS_SUCCESS;
}

namespace {

// Copies an attribute of the documented size in or out of a descriptor field.
template <class Field>
cublasStatus_t set_field(const char* api, int attr, Field& field, const void* buf, size_t size) {
  if (buf == nullptr || size != sizeof(Field))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "attribute %d takes %zu bytes, %zu given%s",
                  attr, sizeof(Field), size, buf == nullptr ? " (null buffer)" : "");
  std::memcpy(&field, buf, sizeof(Field));
  return CUBLAS_STATUS_SUCCESS;
}

template <class Field>
cublasStatus_t get_field(const char* api, int attr, const Field& field, void* buf, size_t size,
                         size_t* written) {
  if (size == 0) {
    if (written == nullptr) return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "null sizeWritten");
    *written = sizeof(Field);
    return CUBLAS_STATUS_SUCCESS;
  }
  if (buf == nullptr || size != sizeof(Field))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "attribute %d takes %zu bytes, %zu given", attr,
                  sizeof(Field), size);
  std::memcpy(buf, &field, sizeof(Field));
  if (written) *written = sizeof(Field);
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

#define TURBINE_EMU_LAYOUT_FIELDS(X)                     \
  X(CUBLASLT_MATRIX_LAYOUT_TYPE, type)                   \
  X(CUBLASLT_MATRIX_LAYOUT_ORDER, order)                 \
  X(CUBLASLT_MATRIX_LAYOUT_ROWS, rows)                   \
  X(CUBLASLT_MATRIX_LAYOUT_COLS, cols)                   \
  X(CUBLASLT_MATRIX_LAYOUT_LD, ld)                       \
  X(CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, batch)           \
  X(CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, stride) \
  X(CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET, plane_offset)

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout,
                                                cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t sizeInBytes) {
  const char* api = "cublasLtMatrixLayoutSetAttribute";
  if (!objects<Layout>().valid(layout))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "layout %p was destroyed or never created",
                  static_cast<void*>(layout));
  switch (attr) {
#define X(name, field) \
  case name:           \
    return set_field(api, attr, layout->field, buf, sizeInBytes);
    TURBINE_EMU_LAYOUT_FIELDS(X)
#undef X
  }
  return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "attribute %d", static_cast<int>(attr));
}

cublasStatus_t cublasLtMatrixLayoutGetAttribute(cublasLtMatrixLayout_t layout,
                                                cublasLtMatrixLayoutAttribute_t attr, void* buf,
                                                size_t sizeInBytes, size_t* sizeWritten) {
  const char* api = "cublasLtMatrixLayoutGetAttribute";
  if (!objects<Layout>().valid(layout))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "layout %p was destroyed or never created",
                  static_cast<void*>(layout));
  switch (attr) {
#define X(name, field) \
  case name:           \
    return get_field(api, attr, layout->field, buf, sizeInBytes, sizeWritten);
    TURBINE_EMU_LAYOUT_FIELDS(X)
#undef X
  }
  return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "attribute %d", static_cast<int>(attr));
}

#define TURBINE_EMU_DESC_FIELDS(X)                   \
  X(CUBLASLT_MATMUL_DESC_COMPUTE_TYPE, compute)      \
  X(CUBLASLT_MATMUL_DESC_SCALE_TYPE, scale)          \
  X(CUBLASLT_MATMUL_DESC_POINTER_MODE, pointer_mode) \
  X(CUBLASLT_MATMUL_DESC_TRANSA, transa)             \
  X(CUBLASLT_MATMUL_DESC_TRANSB, transb)             \
  X(CUBLASLT_MATMUL_DESC_TRANSC, transc)             \
  X(CUBLASLT_MATMUL_DESC_FILL_MODE, fill_mode)       \
  X(CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue)         \
  X(CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias)

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t computeType,
                                        cudaDataType_t scaleType) {
  if (desc == nullptr)
    return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulDescCreate", "null desc");
  auto d = std::make_unique<cublasLtMatmulDescOpaque_t>();
  d->compute = computeType;
  d->scale = scaleType;
  *desc = objects<cublasLtMatmulDescOpaque_t>().add(std::move(d));
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  if (!objects<cublasLtMatmulDescOpaque_t>().remove(desc))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulDescDestroy",
                  "descriptor %p was destroyed or never created", static_cast<void*>(desc));
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr, const void* buf,
                                              size_t sizeInBytes) {
  const char* api = "cublasLtMatmulDescSetAttribute";
  if (!objects<cublasLtMatmulDescOpaque_t>().valid(desc))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "descriptor %p was destroyed or never created",
                  static_cast<void*>(desc));
  switch (attr) {
#define X(name, field) \
  case name:           \
    return set_field(api, attr, desc->field, buf, sizeInBytes);
    TURBINE_EMU_DESC_FIELDS(X)
#undef X
  }
  return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "attribute %d", static_cast<int>(attr));
}

cublasStatus_t cublasLtMatmulDescGetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr, void* buf,
                                              size_t sizeInBytes, size_t* sizeWritten) {
  const char* api = "cublasLtMatmulDescGetAttribute";
  if (!objects<cublasLtMatmulDescOpaque_t>().valid(desc))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "descriptor %p was destroyed or never created",
                  static_cast<void*>(desc));
  switch (attr) {
#define X(name, field) \
  case name:           \
    return get_field(api, attr, desc->field, buf, sizeInBytes, sizeWritten);
    TURBINE_EMU_DESC_FIELDS(X)
#undef X
  }
  return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "attribute %d", static_cast<int>(attr));
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  if (pref == nullptr)
    return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulPreferenceCreate", "null pref");
  *pref = objects<cublasLtMatmulPreferenceOpaque_t>().add(
      std::make_unique<cublasLtMatmulPreferenceOpaque_t>());
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  if (!objects<cublasLtMatmulPreferenceOpaque_t>().remove(pref))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulPreferenceDestroy",
                  "preference %p was destroyed or never created", static_cast<void*>(pref));
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void* buf, size_t sizeInBytes) {
  const char* api = "cublasLtMatmulPreferenceSetAttribute";
  if (!objects<cublasLtMatmulPreferenceOpaque_t>().valid(pref))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "preference %p was destroyed or never created",
                  static_cast<void*>(pref));
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_SEARCH_MODE:
      return set_field(api, attr, pref->search_mode, buf, sizeInBytes);
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
      return set_field(api, attr, pref->max_workspace, buf, sizeInBytes);
    case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK:
      return set_field(api, attr, pref->reduction_mask, buf, sizeInBytes);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
      return set_field(api, attr,
                       pref->min_alignment[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf,
                       sizeInBytes);
    case CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT:
      return set_field(api, attr, pref->max_waves, buf, sizeInBytes);
  }
  return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "attribute %d", static_cast<int>(attr));
}

// cuBLASLt: heuristic and matmul -----------------------------------------

namespace {

cublasStatus_t lookup(const char* api, cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                      std::initializer_list<cublasLtMatrixLayout_t> layouts) {
  if (!objects<cublasLtContext>().valid(handle))
    return refuse(CUBLAS_STATUS_NOT_INITIALIZED, api, "handle %p was destroyed or never created",
                  static_cast<void*>(handle));
  if (!objects<cublasLtMatmulDescOpaque_t>().valid(desc))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api,
                  "matmul descriptor %p was destroyed or never created", static_cast<void*>(desc));
  for (cublasLtMatrixLayout_t l : layouts)
    if (!objects<Layout>().valid(l))
      return refuse(CUBLAS_STATUS_INVALID_VALUE, api,
                    "matrix layout %p was destroyed or never created", static_cast<void*>(l));
  return CUBLAS_STATUS_SUCCESS;
}

// The algorithm the emulator offers for a problem under a preference, or
// false when the preference rules every algorithm out.
bool choose(const Problem& p, const cublasLtMatmulDescOpaque_t& op,
            const cublasLtMatmulPreferenceOpaque_t& pref, AlgoInfo* info, std::string* why) {
  const Layout* layouts[4] = {&p.a, &p.b, &p.c, &p.d};
  for (int i = 0; i < 4; ++i) {
    const uint32_t wanted = pref.min_alignment[i];
    if (wanted == 0 || (wanted & (wanted - 1)) != 0 || wanted < element_bytes(layouts[i]->type)) {
      *why = "a minimum alignment below the element size or not a power of two";
      return false;
    }
    info->alignment[i] = std::min(wanted, kAlgoAlignment);
  }
  info->workspace = std::min<uint64_t>(pref.max_workspace, kAlgoWorkspace);
  info->signature = signature(op, p);
  return true;
}

}  // namespace

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t handle, cublasLtMatmulDesc_t operationDesc, cublasLtMatrixLayout_t Adesc,
    cublasLtMatrixLayout_t Bdesc, cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
    cublasLtMatmulPreference_t preference, int requestedAlgoCount,
    cublasLtMatmulHeuristicResult_t heuristicResultsArray[], int* returnAlgoCount) {
  const char* api = "cublasLtMatmulAlgoGetHeuristic";
  if (const cublasStatus_t s = lookup(api, handle, operationDesc, {Adesc, Bdesc, Cdesc, Ddesc}))
    return s;
  if (!objects<cublasLtMatmulPreferenceOpaque_t>().valid(preference))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "preference %p was destroyed or never created",
                  static_cast<void*>(preference));
  if (requestedAlgoCount <= 0 || heuristicResultsArray == nullptr || returnAlgoCount == nullptr)
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "requestedAlgoCount %d or null results",
                  requestedAlgoCount);
  *returnAlgoCount = 0;
  Problem p;
  if (const cublasStatus_t s =
          make_problem(api, *operationDesc, *Adesc, *Bdesc, *Cdesc, *Ddesc, &p))
    return s;
  AlgoInfo info{};
  std::string why;
  if (!choose(p, *operationDesc, *preference, &info, &why))
    return refuse(CUBLAS_STATUS_NOT_SUPPORTED, api, "no algorithm: %s", why.c_str());
  heuristicResultsArray[0] = cublasLtMatmulHeuristicResult_t{};
  heuristicResultsArray[0].algo = encode(info);
  heuristicResultsArray[0].workspaceSize = info.workspace;
  heuristicResultsArray[0].state = CUBLAS_STATUS_SUCCESS;
  heuristicResultsArray[0].wavesCount = 1.0f;
  *returnAlgoCount = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t computeDesc,
                              const void* alpha, const void* A, cublasLtMatrixLayout_t Adesc,
                              const void* B, cublasLtMatrixLayout_t Bdesc, const void* beta,
                              const void* C, cublasLtMatrixLayout_t Cdesc, void* D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t* algo,
                              void* workspace, size_t workspaceSizeInBytes, cudaStream_t stream) {
  const char* api = "cublasLtMatmul";
  if (const cublasStatus_t s = lookup(api, handle, computeDesc, {Adesc, Bdesc, Cdesc, Ddesc}))
    return s;
  Problem p;
  if (const cublasStatus_t s = make_problem(api, *computeDesc, *Adesc, *Bdesc, *Cdesc, *Ddesc, &p))
    return s;
  // In place (C == D) needs Cdesc == Ddesc; out of place, C's ld may differ.
  if (C == D &&
      (Cdesc->ld != Ddesc->ld || Cdesc->type != Ddesc->type || Cdesc->stride != Ddesc->stride))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api,
                  "C == D in place but Cdesc and Ddesc differ (ld %lld / %lld)",
                  static_cast<long long>(Cdesc->ld), static_cast<long long>(Ddesc->ld));
  AlgoInfo info{};
  if (algo == nullptr) {  // an implicit heuristic query with the given workspace
    cublasLtMatmulPreferenceOpaque_t pref;
    pref.max_workspace = workspaceSizeInBytes;
    std::string why;
    if (!choose(p, *computeDesc, pref, &info, &why))
      return refuse(CUBLAS_STATUS_NOT_SUPPORTED, api, "no algorithm: %s", why.c_str());
    for (uint32_t& a : info.alignment) a = 1;
  } else {
    if (algo->data[0] != kAlgoMagic)
      return refuse(CUBLAS_STATUS_INVALID_VALUE, api,
                    "algo was not initialized by cublasLtMatmulAlgoGetHeuristic");
    for (int i = 0; i < 4; ++i) info.alignment[i] = uint32_t(algo->data[1 + i]);
    info.workspace = algo->data[5];
    if (algo->data[6] != signature(*computeDesc, p))
      return refuse(CUBLAS_STATUS_INVALID_VALUE, api,
                    "algo was chosen for another compute type or other data types");
  }
  if (workspaceSizeInBytes < info.workspace)
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api,
                  "workspace of %zu bytes, but the algorithm needs %llu", workspaceSizeInBytes,
                  static_cast<unsigned long long>(info.workspace));
  const void* pointers[4] = {A, B, C, D};
  const char* names = "ABCD";
  for (int i = 0; i < 4; ++i) {
    if (pointers[i] != nullptr && alignment_of(pointers[i]) < info.alignment[i])
      return refuse(
          CUBLAS_STATUS_NOT_SUPPORTED, api,
          "%c at %p is %u-byte aligned, but the algorithm needs %u (the heuristic's "
          "preference promised at least that: CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_%c_BYTES, "
          "default 256)",
          names[i], pointers[i], alignment_of(pointers[i]), info.alignment[i], names[i]);
  }
  if (info.workspace > 0) {
    if (!is_device_range(workspace, info.workspace)) {
      set_last_error(cudaErrorIllegalAddress);
      return refuse(CUBLAS_STATUS_EXECUTION_FAILED, api,
                    "workspace %s does not hold the %llu bytes the algorithm uses",
                    describe_range(workspace, 0).c_str(),
                    static_cast<unsigned long long>(info.workspace));
    }
  }
  const cublasStatus_t status = run(api, p, alpha, A, B, beta, C, D, stream);
  // The algorithm's scratch: garbage afterwards, as on a GPU.
  if (status == CUBLAS_STATUS_SUCCESS && info.workspace > 0)
    std::memset(workspace, 0xA5, info.workspace);
  return status;
}

// Classic cuBLAS -------------------------------------------------------------

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (handle == nullptr) return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasCreate", "null");
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
    return refuse(CUBLAS_STATUS_NOT_INITIALIZED, "cublasCreate", "no device");
  auto h = std::make_unique<cublasContext>();
  h->device = current_device();
  *handle = objects<cublasContext>().add(std::move(h));
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (!objects<cublasContext>().remove(handle))
    return refuse(CUBLAS_STATUS_NOT_INITIALIZED, "cublasDestroy",
                  "handle %p was destroyed or never created", static_cast<void*>(handle));
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!objects<cublasContext>().valid(handle))
    return refuse(CUBLAS_STATUS_NOT_INITIALIZED, "cublasSetStream",
                  "handle %p was destroyed or never created", static_cast<void*>(handle));
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream) {
  if (!objects<cublasContext>().valid(handle))
    return refuse(CUBLAS_STATUS_NOT_INITIALIZED, "cublasGetStream",
                  "handle %p was destroyed or never created", static_cast<void*>(handle));
  if (stream == nullptr) return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasGetStream", "null");
  *stream = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetPointerMode(cublasHandle_t handle, cublasPointerMode_t mode) {
  if (!objects<cublasContext>().valid(handle))
    return refuse(CUBLAS_STATUS_NOT_INITIALIZED, "cublasSetPointerMode",
                  "handle %p was destroyed or never created", static_cast<void*>(handle));
  if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE)
    return refuse(CUBLAS_STATUS_INVALID_VALUE, "cublasSetPointerMode", "mode %d", mode);
  handle->pointer_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
                                          cublasOperation_t transb, int m, int n, int k,
                                          const void* alpha, const void* A, cudaDataType Atype,
                                          int lda, long long int strideA, const void* B,
                                          cudaDataType Btype, int ldb, long long int strideB,
                                          const void* beta, void* C, cudaDataType Ctype, int ldc,
                                          long long int strideC, int batchCount,
                                          cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
  const char* api = "cublasGemmStridedBatchedEx";
  if (!objects<cublasContext>().valid(handle))
    return refuse(CUBLAS_STATUS_NOT_INITIALIZED, api, "handle %p was destroyed or never created",
                  static_cast<void*>(handle));
  if (!(algo == CUBLAS_GEMM_DEFAULT || (algo >= 0 && algo <= 23) ||
        (algo >= CUBLAS_GEMM_DEFAULT_TENSOR_OP && algo <= 115)))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "algo %d", static_cast<int>(algo));
  for (cublasOperation_t t : {transa, transb})
    if (t != CUBLAS_OP_N && t != CUBLAS_OP_T && t != CUBLAS_OP_C)
      return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "operation %d", static_cast<int>(t));
  // The cuBLAS reference's argument rules (gemmEx / gemmStridedBatchedEx).
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  if (m < 0 || n < 0 || k < 0 || batchCount < 0)
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api, "m %d, n %d, k %d, batchCount %d", m, n, k,
                  batchCount);
  if (lda < std::max(1, ta ? k : m) || ldb < std::max(1, tb ? n : k) || ldc < std::max(1, m))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api,
                  "lda %d (needs >= %d), ldb %d (needs >= %d), ldc %d (needs >= %d)", lda,
                  std::max(1, ta ? k : m), ldb, std::max(1, tb ? n : k), ldc, std::max(1, m));
  Problem p;
  if (const cublasStatus_t s =
          check_types(api, computeType, CUDA_R_32F, Atype, Btype, Ctype, Ctype, &p.rounding))
    return s;
  if (m == 0 || n == 0 || batchCount == 0) return CUBLAS_STATUS_SUCCESS;
  p.m = m;
  p.n = n;
  p.k = k;
  p.batch = batchCount;
  p.trans_a = ta;
  p.trans_b = tb;
  p.a = Layout{uint32_t(Atype),
               CUBLASLT_ORDER_COL,
               uint64_t(ta ? k : m),
               uint64_t(ta ? m : k),
               lda,
               batchCount,
               strideA,
               0};
  p.b = Layout{uint32_t(Btype),
               CUBLASLT_ORDER_COL,
               uint64_t(tb ? n : k),
               uint64_t(tb ? k : n),
               ldb,
               batchCount,
               strideB,
               0};
  p.c = Layout{
      uint32_t(Ctype), CUBLASLT_ORDER_COL, uint64_t(m), uint64_t(n), ldc, batchCount, strideC, 0};
  p.d = p.c;
  if (batchCount > 1 && std::abs(strideC) < matrix_extent(p.c))
    return refuse(CUBLAS_STATUS_INVALID_VALUE, api,
                  "C's batches overlap: strideC %lld < one matrix's extent %lld", strideC,
                  static_cast<long long>(matrix_extent(p.c)));
  p.device_scalars = handle->pointer_mode == CUBLAS_POINTER_MODE_DEVICE;
  return run(api, p, alpha, A, B, beta, C, C, handle->stream);
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void* alpha,
                            const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo) {
  return cublasGemmStridedBatchedEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B,
                                    Btype, ldb, 0, beta, C, Ctype, ldc, 0, 1, computeType, algo);
}
