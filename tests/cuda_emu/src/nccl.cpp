// The emulated NCCL over MPI: communicators from MPI_Comm_split, collectives
// as MPI gathers reduced locally in rank order (deterministic), point to
// point as nonblocking MPI messages posted together at ncclGroupEnd. See
// nccl.h for the contract and its limits.
#include <mpi.h>
#include <nccl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <type_traits>
#include <vector>

#include "host_float16.hpp"
#include "host_internal.hpp"

struct ncclComm {
  MPI_Comm mpi = MPI_COMM_NULL;
  int rank = 0;
  int size = 1;
  int device = 0;
};

namespace turbine_emu {
namespace {

// Data moved per rank per MPI step, bounding the gather buffers.
constexpr size_t kChunkBytes = size_t(16) << 20;
constexpr int kTag = 0x4e43;  // "NC"

struct Comms {
  std::mutex mutex;
  std::set<const ncclComm*> live;
  std::vector<std::unique_ptr<ncclComm>> storage;  // never freed: stale handles stay invalid
};

Comms& comms() {  // never destroyed: communicators may be destroyed during exit
  static Comms& c = *new Comms;
  return c;
}

bool valid(const ncclComm* comm) {
  Comms& c = comms();
  std::lock_guard lock(c.mutex);
  return comm != nullptr && c.live.count(comm) != 0;
}

// The 16-bit floating types, stored as uint16_t and reduced in f32.
struct F16 {};
struct Bf16 {};

// Calls f(std::type_identity<T>{}) with T the C++ type of an NCCL data type
// (F16 / Bf16 for the 16-bit floats); false for an unknown type.
template <class F>
bool visit_type(ncclDataType_t type, F&& f) {
  switch (type) {
    case ncclInt8:
      f(std::type_identity<int8_t>{});
      return true;
    case ncclUint8:
      f(std::type_identity<uint8_t>{});
      return true;
    case ncclInt32:
      f(std::type_identity<int32_t>{});
      return true;
    case ncclUint32:
      f(std::type_identity<uint32_t>{});
      return true;
    case ncclInt64:
      f(std::type_identity<int64_t>{});
      return true;
    case ncclUint64:
      f(std::type_identity<uint64_t>{});
      return true;
    case ncclFloat16:
      f(std::type_identity<F16>{});
      return true;
    case ncclBfloat16:
      f(std::type_identity<Bf16>{});
      return true;
    case ncclFloat32:
      f(std::type_identity<float>{});
      return true;
    case ncclFloat64:
      f(std::type_identity<double>{});
      return true;
    default:
      return false;
  }
}

size_t type_bytes(ncclDataType_t type) {
  size_t bytes = 0;
  visit_type(type, [&]<class T>(std::type_identity<T>) {
    bytes = std::is_empty_v<T> ? sizeof(uint16_t) : sizeof(T);
  });
  return bytes;
}

template <class... Args>
ncclResult_t refuse(ncclResult_t result, const char* api, const char* format, Args... args) {
  diagnose(api, format, args...);
  return result;
}

// One elementwise reduction step in T's arithmetic (16-bit floats in f32,
// rounded back each step, as NCCL's kernels do).
template <class T>
T combine(T a, T b, ncclRedOp_t op) {
  switch (op) {
    case ncclSum:
    case ncclAvg:
      return static_cast<T>(a + b);
    case ncclProd:
      return static_cast<T>(a * b);
    case ncclMax:
      return std::max(a, b);
    case ncclMin:
      return std::min(a, b);
    default:
      return a;
  }
}

template <class T>
void reduce_typed(void* acc, const void* x, size_t n, ncclRedOp_t op, double premul, bool first) {
  auto* a = static_cast<T*>(acc);
  const auto* b = static_cast<const T*>(x);
  for (size_t i = 0; i < n; ++i) {
    T v = b[i];
    if constexpr (std::is_floating_point_v<T>)
      if (op == ncclAvg) v = static_cast<T>(v * static_cast<T>(premul));
    a[i] = first ? v : combine(a[i], v, op);
  }
}

template <float (*Load)(uint16_t), uint16_t (*Store)(float)>
void reduce_16(void* acc, const void* x, size_t n, ncclRedOp_t op, double premul, bool first) {
  auto* a = static_cast<uint16_t*>(acc);
  const auto* b = static_cast<const uint16_t*>(x);
  for (size_t i = 0; i < n; ++i) {
    float v = Load(b[i]);
    if (op == ncclAvg) v = Load(Store(v * static_cast<float>(premul)));
    a[i] = first ? Store(v) : Store(combine(Load(a[i]), v, op));
  }
}

// acc = x (first) or acc op x, elementwise. ncclAvg: floating types
// premultiply each contribution by 1/nranks (NCCL's PreMulSum); integer
// types divide the sum at the end (finish_average).
void reduce_step(void* acc, const void* x, size_t n, ncclDataType_t type, ncclRedOp_t op,
                 int nranks, bool first) {
  const double premul = 1.0 / nranks;
  visit_type(type, [&]<class T>(std::type_identity<T>) {
    if constexpr (std::is_same_v<T, F16>)
      reduce_16<f16_to_f32, f32_to_f16>(acc, x, n, op, premul, first);
    else if constexpr (std::is_same_v<T, Bf16>)
      reduce_16<bf16_to_f32, f32_to_bf16>(acc, x, n, op, premul, first);
    else
      reduce_typed<T>(acc, x, n, op, premul, first);
  });
}

template <class T>
void divide(void* acc, size_t n, int nranks) {
  auto* a = static_cast<T*>(acc);
  for (size_t i = 0; i < n; ++i) a[i] = static_cast<T>(a[i] / static_cast<T>(nranks));
}

void finish_average(void* acc, size_t n, ncclDataType_t type, ncclRedOp_t op, int nranks) {
  if (op != ncclAvg) return;
  visit_type(type, [&]<class T>(std::type_identity<T>) {
    if constexpr (std::is_integral_v<T>) divide<T>(acc, n, nranks);  // floats: premultiplied
  });
}

// Reduces `nranks` consecutive blocks of n elements in rank order into out.
void reduce_blocks(void* out, const char* blocks, size_t n, ncclDataType_t type, ncclRedOp_t op,
                   int nranks) {
  const size_t bytes = n * type_bytes(type);
  for (int r = 0; r < nranks; ++r)
    reduce_step(out, blocks + r * bytes, n, type, op, nranks, r == 0);
  finish_average(out, n, type, op, nranks);
}

ncclResult_t mpi_failed(const char* api, int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return refuse(ncclSystemError, api, "MPI: %s", text);
}

#define TURBINE_EMU_MPI(api, call)                                         \
  do {                                                                     \
    const int turbine_mpi_ = (call);                                       \
    if (turbine_mpi_ != MPI_SUCCESS) return mpi_failed(api, turbine_mpi_); \
  } while (0)

bool overlap(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const auto x = reinterpret_cast<uintptr_t>(a);
  const auto y = reinterpret_cast<uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && x < y + b_bytes && y < x + a_bytes;
}

// NCCL's argument checks: a live communicator, a stream of its device, a
// known type and op, and buffers in device memory of the communicator's device.
ncclResult_t check_common(const char* api, const ncclComm* comm, ncclDataType_t type,
                          cudaStream_t stream) {
  if (!valid(comm))
    return refuse(ncclInvalidArgument, api, "communicator %p was destroyed or never created",
                  static_cast<const void*>(comm));
  if (type_bytes(type) == 0) return refuse(ncclInvalidArgument, api, "data type %d", type);
  const int device = stream_device(stream);
  if (device != comm->device)
    return refuse(ncclUnhandledCudaError, api,
                  device < 0 ? "stream %p was destroyed or never created"
                             : "stream %p is not of the communicator's device",
                  static_cast<void*>(stream));
  return ncclSuccess;
}

ncclResult_t check_buffer(const char* api, const char* name, const void* p, size_t bytes,
                          const ncclComm* comm) {
  if (bytes == 0) return ncclSuccess;
  if (!is_device_range(p, bytes))
    return refuse(ncclInvalidArgument, api, "%s (%zu bytes) at %s is not device memory", name,
                  bytes, describe_range(p, bytes).c_str());
  if (device_of(p) != comm->device)
    return refuse(ncclInvalidArgument, api, "%s is on device %d, the communicator on device %d",
                  name, device_of(p), comm->device);
  return ncclSuccess;
}

ncclResult_t check_op(const char* api, ncclRedOp_t op) {
  if (op < ncclSum || op >= ncclNumOps) return refuse(ncclInvalidArgument, api, "op %d", op);
  return ncclSuccess;
}

// Grouped work: run at the outermost ncclGroupEnd, or at once outside a group.
struct Pending {
  std::function<ncclResult_t(std::vector<MPI_Request>&)> start;
};

thread_local int group_depth = 0;
thread_local std::vector<Pending> group_queue;

ncclResult_t run_queue(std::vector<Pending>& queue) {
  std::vector<MPI_Request> requests;
  ncclResult_t result = ncclSuccess;
  for (Pending& p : queue) {
    result = p.start(requests);
    if (result != ncclSuccess) break;
  }
  queue.clear();
  if (!requests.empty()) {
    std::vector<MPI_Status> statuses(requests.size());
    const int code =
        MPI_Waitall(static_cast<int>(requests.size()), requests.data(), statuses.data());
    if (code != MPI_SUCCESS && result == ncclSuccess)
      result = refuse(ncclInvalidUsage, "ncclGroupEnd",
                      "a send and its receive disagree (count or type?): MPI error %d", code);
  }
  return result;
}

ncclResult_t submit(Pending work) {
  if (group_depth > 0) {
    group_queue.push_back(std::move(work));
    return ncclSuccess;
  }
  std::vector<Pending> single;
  single.push_back(std::move(work));
  return run_queue(single);
}

// Gathers equal chunks from every rank: out holds nranks * bytes.
int allgather_bytes(const void* in, void* out, size_t bytes, MPI_Comm comm) {
  return MPI_Allgather(in, static_cast<int>(bytes), MPI_BYTE, out, static_cast<int>(bytes),
                       MPI_BYTE, comm);
}

size_t chunk_elements(ncclDataType_t type) {
  return std::max<size_t>(1, kChunkBytes / type_bytes(type));
}

uint64_t fnv1a(const void* data, size_t bytes) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace
}  // namespace turbine_emu

using namespace turbine_emu;

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess:
      return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError:
      return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError:
      return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument:
      return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage:
      return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError:
      return "remote process exited or there was a network error";
    case ncclInProgress:
      return "NCCL operation in progress";
    default:
      return "unknown result code";
  }
}

ncclResult_t ncclGetVersion(int* version) {
  if (version == nullptr) return refuse(ncclInvalidArgument, "ncclGetVersion", "null version");
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId) {
  if (uniqueId == nullptr) return refuse(ncclInvalidArgument, "ncclGetUniqueId", "null id");
  static std::mutex mutex;
  static std::mt19937_64 random([] {
    std::random_device device;
    return (uint64_t(device()) << 32) ^ device() ^
           uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()) ^
           (uint64_t(getpid()) << 17);
  }());
  std::lock_guard lock(mutex);
  for (size_t i = 0; i < NCCL_UNIQUE_ID_BYTES; i += 8) {
    const uint64_t word = random();
    std::memcpy(uniqueId->internal + i, &word, 8);
  }
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
  const char* api = "ncclCommInitRank";
  if (comm == nullptr) return refuse(ncclInvalidArgument, api, "null comm");
  *comm = nullptr;
  if (nranks < 1 || rank < 0 || rank >= nranks)
    return refuse(ncclInvalidArgument, api, "rank %d of %d", rank, nranks);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized)
    return refuse(ncclSystemError, api,
                  "the emulated NCCL runs over MPI: initialize MPI first (and keep it until "
                  "ncclCommDestroy)");
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess)
    return refuse(ncclUnhandledCudaError, api, "no current device");
  // Every world rank joins the split; processes with one id form one comm.
  const uint64_t hash = fnv1a(commId.internal, sizeof(commId.internal));
  MPI_Comm mpi = MPI_COMM_NULL;
  TURBINE_EMU_MPI(api,
                  MPI_Comm_split(MPI_COMM_WORLD, static_cast<int>(hash & 0x7fffffff), rank, &mpi));
  MPI_Comm_set_errhandler(mpi, MPI_ERRORS_RETURN);
  struct Peer {
    int rank, nranks, device;
    char host[MPI_MAX_PROCESSOR_NAME];
    char id[NCCL_UNIQUE_ID_BYTES];
  } me{};
  me.rank = rank;
  me.nranks = nranks;
  me.device = physical_device(device);  // the same GPU under any CUDA_VISIBLE_DEVICES
  if (const char* host = std::getenv("NCCL_HOSTID"); host && *host) {
    std::snprintf(me.host, sizeof(me.host), "%s", host);
  } else {
    int length = 0;
    MPI_Get_processor_name(me.host, &length);
  }
  std::memcpy(me.id, commId.internal, sizeof(me.id));
  int size = 0, mpi_rank = 0;
  MPI_Comm_size(mpi, &size);
  MPI_Comm_rank(mpi, &mpi_rank);
  std::vector<Peer> peers(size_t(size), Peer{});
  const int code = allgather_bytes(&me, peers.data(), sizeof(Peer), mpi);
  if (code != MPI_SUCCESS) {
    MPI_Comm_free(&mpi);
    return mpi_failed(api, code);
  }
  // Every member reaches the same verdict from the same gathered table.
  ncclResult_t verdict = ncclSuccess;
  for (int i = 0; i < size && verdict == ncclSuccess; ++i) {
    const Peer& p = peers[size_t(i)];
    if (std::memcmp(p.id, me.id, sizeof(me.id)) != 0)
      verdict = refuse(ncclInternalError, api, "unique id hash collision between communicators");
    else if (p.nranks != size)
      verdict = refuse(ncclInvalidUsage, api,
                       "rank %d was told nranks %d, but %d processes joined with this id", p.rank,
                       p.nranks, size);
    else if (p.rank != i)
      verdict = refuse(ncclInvalidArgument, api, "rank %d given to more than one process", p.rank);
    for (int j = 0; j < i && verdict == ncclSuccess; ++j) {
      const Peer& q = peers[size_t(j)];
      if (q.device == p.device && std::strcmp(q.host, p.host) == 0)
        verdict = refuse(ncclInvalidUsage, api,
                         "Duplicate GPU detected : rank %d and rank %d both on CUDA device %d "
                         "of host %s (give each rank its own device: cudaSetDevice)",
                         q.rank, p.rank, p.device, p.host);
    }
  }
  if (verdict != ncclSuccess) {
    MPI_Comm_free(&mpi);
    return verdict;
  }
  auto made = std::make_unique<ncclComm>();
  made->mpi = mpi;
  made->rank = mpi_rank;
  made->size = size;
  made->device = device;
  Comms& c = comms();
  std::lock_guard lock(c.mutex);
  c.storage.push_back(std::move(made));
  *comm = c.storage.back().get();
  c.live.insert(*comm);
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm == nullptr) return ncclSuccess;
  {
    Comms& c = comms();
    std::lock_guard lock(c.mutex);
    if (c.live.erase(comm) == 0)
      return refuse(ncclInvalidArgument, "ncclCommDestroy",
                    "communicator %p was destroyed or never created", static_cast<void*>(comm));
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm->mpi);
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  return ncclCommDestroy(comm);
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  if (!valid(comm) || count == nullptr)
    return refuse(ncclInvalidArgument, "ncclCommCount", "invalid communicator or null count");
  *count = comm->size;
  return ncclSuccess;
}

ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int* device) {
  if (!valid(comm) || device == nullptr)
    return refuse(ncclInvalidArgument, "ncclCommCuDevice", "invalid communicator or null device");
  *device = comm->device;
  return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  if (!valid(comm) || rank == nullptr)
    return refuse(ncclInvalidArgument, "ncclCommUserRank", "invalid communicator or null rank");
  *rank = comm->rank;
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream) {
  const char* api = "ncclAllReduce";
  if (ncclResult_t r = check_common(api, comm, datatype, stream)) return r;
  if (ncclResult_t r = check_op(api, op)) return r;
  const size_t bytes = count * type_bytes(datatype);
  if (ncclResult_t r = check_buffer(api, "sendbuff", sendbuff, bytes, comm)) return r;
  if (ncclResult_t r = check_buffer(api, "recvbuff", recvbuff, bytes, comm)) return r;
  if (sendbuff != recvbuff && overlap(sendbuff, bytes, recvbuff, bytes))
    return refuse(ncclInvalidArgument, api, "sendbuff and recvbuff overlap without being equal");
  return submit({[=](std::vector<MPI_Request>&) -> ncclResult_t {
    const size_t esize = type_bytes(datatype), chunk = chunk_elements(datatype);
    std::vector<char> gathered;
    for (size_t off = 0; off < count; off += chunk) {
      const size_t n = std::min(chunk, count - off);
      gathered.resize(n * esize * size_t(comm->size));
      TURBINE_EMU_MPI(api, allgather_bytes(static_cast<const char*>(sendbuff) + off * esize,
                                           gathered.data(), n * esize, comm->mpi));
      reduce_blocks(static_cast<char*>(recvbuff) + off * esize, gathered.data(), n, datatype, op,
                    comm->size);
    }
    return ncclSuccess;
  }});
}

ncclResult_t ncclReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                        ncclRedOp_t op, int root, ncclComm_t comm, cudaStream_t stream) {
  const char* api = "ncclReduce";
  if (ncclResult_t r = check_common(api, comm, datatype, stream)) return r;
  if (ncclResult_t r = check_op(api, op)) return r;
  if (root < 0 || root >= comm->size)
    return refuse(ncclInvalidArgument, api, "root %d of %d ranks", root, comm->size);
  const size_t bytes = count * type_bytes(datatype);
  const bool is_root = comm->rank == root;
  if (ncclResult_t r = check_buffer(api, "sendbuff", sendbuff, bytes, comm)) return r;
  if (is_root) {  // recvbuff is used on the root only
    if (ncclResult_t r = check_buffer(api, "recvbuff", recvbuff, bytes, comm)) return r;
    if (sendbuff != recvbuff && overlap(sendbuff, bytes, recvbuff, bytes))
      return refuse(ncclInvalidArgument, api, "sendbuff and recvbuff overlap without being equal");
  }
  return submit({[=](std::vector<MPI_Request>&) -> ncclResult_t {
    const size_t esize = type_bytes(datatype), chunk = chunk_elements(datatype);
    std::vector<char> gathered;
    for (size_t off = 0; off < count; off += chunk) {
      const size_t n = std::min(chunk, count - off);
      if (is_root) gathered.resize(n * esize * size_t(comm->size));
      TURBINE_EMU_MPI(api, MPI_Gather(static_cast<const char*>(sendbuff) + off * esize,
                                      static_cast<int>(n * esize), MPI_BYTE, gathered.data(),
                                      static_cast<int>(n * esize), MPI_BYTE, root, comm->mpi));
      if (is_root)
        reduce_blocks(static_cast<char*>(recvbuff) + off * esize, gathered.data(), n, datatype, op,
                      comm->size);
    }
    return ncclSuccess;
  }});
}

ncclResult_t ncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                               ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                               cudaStream_t stream) {
  const char* api = "ncclReduceScatter";
  if (ncclResult_t r = check_common(api, comm, datatype, stream)) return r;
  if (ncclResult_t r = check_op(api, op)) return r;
  const size_t esize = type_bytes(datatype);
  const size_t block = recvcount * esize;
  if (ncclResult_t r = check_buffer(api, "sendbuff", sendbuff, block * size_t(comm->size), comm))
    return r;
  if (ncclResult_t r = check_buffer(api, "recvbuff", recvbuff, block, comm)) return r;
  // In place: recvbuff == sendbuff + rank * recvcount; any other overlap is an error.
  const void* in_place = static_cast<const char*>(sendbuff) + block * size_t(comm->rank);
  if (recvbuff != in_place && overlap(sendbuff, block * size_t(comm->size), recvbuff, block))
    return refuse(ncclInvalidArgument, api,
                  "recvbuff overlaps sendbuff but is not sendbuff + rank * recvcount");
  return submit({[=](std::vector<MPI_Request>&) -> ncclResult_t {
    const size_t chunk = chunk_elements(datatype);
    const size_t ranks = size_t(comm->size);
    std::vector<char> packed, gathered;
    for (size_t off = 0; off < recvcount; off += chunk) {
      const size_t n = std::min(chunk, recvcount - off);
      packed.resize(n * esize * ranks);
      gathered.resize(n * esize * ranks);
      for (size_t j = 0; j < ranks; ++j)
        std::memcpy(packed.data() + j * n * esize,
                    static_cast<const char*>(sendbuff) + j * block + off * esize, n * esize);
      TURBINE_EMU_MPI(
          api, MPI_Alltoall(packed.data(), static_cast<int>(n * esize), MPI_BYTE, gathered.data(),
                            static_cast<int>(n * esize), MPI_BYTE, comm->mpi));
      reduce_blocks(static_cast<char*>(recvbuff) + off * esize, gathered.data(), n, datatype, op,
                    comm->size);
    }
    return ncclSuccess;
  }});
}

ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                           ncclDataType_t datatype, ncclComm_t comm, cudaStream_t stream) {
  const char* api = "ncclAllGather";
  if (ncclResult_t r = check_common(api, comm, datatype, stream)) return r;
  const size_t esize = type_bytes(datatype);
  const size_t block = sendcount * esize;
  if (ncclResult_t r = check_buffer(api, "sendbuff", sendbuff, block, comm)) return r;
  if (ncclResult_t r = check_buffer(api, "recvbuff", recvbuff, block * size_t(comm->size), comm))
    return r;
  // In place: sendbuff == recvbuff + rank * sendcount.
  const void* in_place = static_cast<const char*>(recvbuff) + block * size_t(comm->rank);
  if (sendbuff != in_place && overlap(sendbuff, block, recvbuff, block * size_t(comm->size)))
    return refuse(ncclInvalidArgument, api,
                  "sendbuff overlaps recvbuff but is not recvbuff + rank * sendcount");
  return submit({[=](std::vector<MPI_Request>&) -> ncclResult_t {
    const size_t chunk = chunk_elements(datatype);
    std::vector<char> gathered;
    for (size_t off = 0; off < sendcount; off += chunk) {
      const size_t n = std::min(chunk, sendcount - off);
      gathered.resize(n * esize * size_t(comm->size));
      TURBINE_EMU_MPI(api, allgather_bytes(static_cast<const char*>(sendbuff) + off * esize,
                                           gathered.data(), n * esize, comm->mpi));
      for (int r = 0; r < comm->size; ++r)
        std::memcpy(static_cast<char*>(recvbuff) + size_t(r) * block + off * esize,
                    gathered.data() + size_t(r) * n * esize, n * esize);
    }
    return ncclSuccess;
  }});
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, int root, ncclComm_t comm,
                           cudaStream_t stream) {
  const char* api = "ncclBroadcast";
  if (ncclResult_t r = check_common(api, comm, datatype, stream)) return r;
  if (root < 0 || root >= comm->size)
    return refuse(ncclInvalidArgument, api, "root %d of %d ranks", root, comm->size);
  const size_t esize = type_bytes(datatype);
  const size_t bytes = count * esize;
  const bool is_root = comm->rank == root;
  if (is_root) {  // sendbuff is used on the root only
    if (ncclResult_t r = check_buffer(api, "sendbuff", sendbuff, bytes, comm)) return r;
    if (sendbuff != recvbuff && overlap(sendbuff, bytes, recvbuff, bytes))
      return refuse(ncclInvalidArgument, api, "sendbuff and recvbuff overlap without being equal");
  }
  if (ncclResult_t r = check_buffer(api, "recvbuff", recvbuff, bytes, comm)) return r;
  return submit({[=](std::vector<MPI_Request>&) -> ncclResult_t {
    if (is_root && sendbuff != recvbuff && bytes > 0) std::memcpy(recvbuff, sendbuff, bytes);
    const size_t chunk = chunk_elements(datatype);
    for (size_t off = 0; off < count; off += chunk) {
      const size_t n = std::min(chunk, count - off);
      TURBINE_EMU_MPI(api, MPI_Bcast(static_cast<char*>(recvbuff) + off * esize,
                                     static_cast<int>(n * esize), MPI_BYTE, root, comm->mpi));
    }
    return ncclSuccess;
  }});
}

namespace {

// Posts one side of a point-to-point transfer, in messages below INT_MAX bytes.
ncclResult_t post(const char* api, bool send, void* buffer, size_t bytes, int peer, ncclComm_t comm,
                  std::vector<MPI_Request>& requests) {
  size_t off = 0;
  do {
    const size_t n = std::min(bytes - off, kChunkBytes);
    MPI_Request request;
    char* p = static_cast<char*>(buffer) + off;
    const int code =
        send ? MPI_Isend(p, static_cast<int>(n), MPI_BYTE, peer, kTag, comm->mpi, &request)
             : MPI_Irecv(p, static_cast<int>(n), MPI_BYTE, peer, kTag, comm->mpi, &request);
    if (code != MPI_SUCCESS) return mpi_failed(api, code);
    requests.push_back(request);
    off += n;
  } while (off < bytes);
  return ncclSuccess;
}

ncclResult_t point_to_point(const char* api, bool send, void* buffer, size_t count,
                            ncclDataType_t datatype, int peer, ncclComm_t comm,
                            cudaStream_t stream) {
  if (ncclResult_t r = check_common(api, comm, datatype, stream)) return r;
  if (peer < 0 || peer >= comm->size)
    return refuse(ncclInvalidArgument, api, "peer %d of %d ranks", peer, comm->size);
  const size_t bytes = count * type_bytes(datatype);
  if (ncclResult_t r = check_buffer(api, send ? "sendbuff" : "recvbuff", buffer, bytes, comm))
    return r;
  return submit({[=](std::vector<MPI_Request>& requests) {
    return post(api, send, buffer, bytes, peer, comm, requests);
  }});
}

}  // namespace

ncclResult_t ncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype, int peer,
                      ncclComm_t comm, cudaStream_t stream) {
  return point_to_point("ncclSend", true, const_cast<void*>(sendbuff), count, datatype, peer, comm,
                        stream);
}

ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype, int peer,
                      ncclComm_t comm, cudaStream_t stream) {
  return point_to_point("ncclRecv", false, recvbuff, count, datatype, peer, comm, stream);
}

ncclResult_t ncclGroupStart() {
  ++group_depth;
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  if (group_depth == 0)
    return refuse(ncclInvalidUsage, "ncclGroupEnd", "no matching ncclGroupStart");
  if (--group_depth > 0) return ncclSuccess;
  return run_queue(group_queue);
}
