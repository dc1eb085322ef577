// MPI collectives with error checks and byte counters.
#include "dist/communicator.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <thread>

#include "core/error.hpp"
#include "core/log.hpp"

namespace turbine::dist {

void check_mpi(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  TURBINE_FAIL("MPI {} failed: {}", what, std::string(text, length));
}

namespace {

// MPI counts are int: large buffers go in pieces.
constexpr int64_t kMaxCount = INT_MAX / 2;

// Activations move as their elements' bits: 16-bit floats as uint16.
MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::i32:
      return MPI_INT32_T;
    case DType::i64:
      return MPI_INT64_T;
    case DType::u8:
      return MPI_UINT8_T;
    case DType::i8:
      return MPI_INT8_T;
    case DType::bf16:
    case DType::f16:
    case DType::u16:
      return MPI_UINT16_T;
  }
  TURBINE_FAIL("MPI collective: unknown dtype {}", static_cast<int>(dtype));
}

int block_count(const char* collective, int64_t block) {
  TURBINE_CHECK(block <= kMaxCount,
                "{}: a block of {} elements is more than MPI's int counts allow: send it in "
                "parts of at most {}",
                collective, block, kMaxCount);
  return static_cast<int>(block);
}
}  // namespace

CommStats& CommStats::operator+=(const CommStats& other) {
  allreduce_bytes += other.allreduce_bytes;
  reduce_scatter_bytes += other.reduce_scatter_bytes;
  allgather_bytes += other.allgather_bytes;
  broadcast_bytes += other.broadcast_bytes;
  all_to_all_bytes += other.all_to_all_bytes;
  calls += other.calls;
  p2p_bytes += other.p2p_bytes;
  return *this;
}

void check_out_of_place(const char* collective, const void* send, int64_t send_bytes,
                        const void* recv, int64_t recv_bytes) {
  TURBINE_CHECK(send_bytes >= 0 && recv_bytes >= 0, "{}: negative block size", collective);
  const auto s = reinterpret_cast<uintptr_t>(send), r = reinterpret_cast<uintptr_t>(recv);
  const bool overlap = send_bytes > 0 && recv_bytes > 0 && s < r + uintptr_t(recv_bytes) &&
                       r < s + uintptr_t(send_bytes);
  TURBINE_CHECK(!overlap,
                "{}: the send and receive buffers overlap; it works out of place (give it a "
                "separate output buffer)",
                collective);
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    // MULTIPLE: the heartbeat thread (dist/heartbeat.hpp) sends and receives while the
    // main thread is in a collective.
    check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided), "init");
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  log::set_rank(rank, size);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

Communicator Communicator::world() {
  return Communicator(MPI_COMM_WORLD, false, "world");
}

Communicator::Communicator(MPI_Comm comm, bool owned, std::string name)
    : comm_(comm), owned_(owned), name_(std::move(name)) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

Communicator Communicator::split(int color, int key) const {
  MPI_Comm out;
  check_mpi(MPI_Comm_split(comm_, color, key, &out), "comm split");
  return Communicator(out, true, name_ + "/" + std::to_string(color));
}

Communicator Communicator::node_local() const {
  MPI_Comm out;
  check_mpi(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &out),
            "comm split by node");
  return Communicator(out, true, name_ + "/node");
}

Communicator::~Communicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owned_ && comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm_);
}

Communicator::Communicator(Communicator&& other) noexcept
    : comm_(other.comm_),
      owned_(other.owned_),
      rank_(other.rank_),
      size_(other.size_),
      name_(std::move(other.name_)),
      stats_(other.stats_),
      pending_(std::move(other.pending_)) {
  other.comm_ = MPI_COMM_NULL;
  other.owned_ = false;
}

Communicator& Communicator::operator=(Communicator&& other) noexcept {
  std::swap(comm_, other.comm_);
  std::swap(owned_, other.owned_);
  std::swap(rank_, other.rank_);
  std::swap(size_, other.size_);
  std::swap(name_, other.name_);
  std::swap(stats_, other.stats_);
  std::swap(pending_, other.pending_);
  return *this;
}

void Communicator::allreduce_sum(float* data, int64_t count) {
  for (int64_t done = 0; done < count; done += kMaxCount) {
    const int n = static_cast<int>(std::min(kMaxCount, count - done));
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data + done, n, MPI_FLOAT, MPI_SUM, comm_), "allreduce");
  }
  stats_.allreduce_bytes += count * 4;
  ++stats_.calls;
}

void Communicator::allreduce_sum(double* data, int64_t count) {
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_DOUBLE, MPI_SUM, comm_),
            "allreduce");
  stats_.allreduce_bytes += count * 8;
  ++stats_.calls;
}

void Communicator::allreduce_max(double* data, int64_t count) {
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_DOUBLE, MPI_MAX, comm_),
            "allreduce");
  stats_.allreduce_bytes += count * 8;
  ++stats_.calls;
}

void Communicator::reduce_scatter_sum_inplace(float* data, int64_t block) {
  TURBINE_CHECK(block <= kMaxCount, "reduce_scatter: block of {} values is too large", block);
  // MPI_IN_PLACE takes the input from the receive buffer and leaves this
  // rank's block at its start; move it to its own place.
  check_mpi(MPI_Reduce_scatter_block(MPI_IN_PLACE, data, static_cast<int>(block), MPI_FLOAT,
                                     MPI_SUM, comm_),
            "reduce_scatter");
  if (rank_ != 0) std::copy(data, data + block, data + rank_ * block);
  stats_.reduce_scatter_bytes += block * size_ * 4;
  ++stats_.calls;
}

void Communicator::allgather_inplace(float* data, int64_t block) {
  TURBINE_CHECK(block <= kMaxCount, "allgather: block of {} values is too large", block);
  check_mpi(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, static_cast<int>(block),
                          MPI_FLOAT, comm_),
            "allgather");
  stats_.allgather_bytes += block * size_ * 4;
  ++stats_.calls;
}

void Communicator::broadcast(void* data, int64_t bytes, int root) {
  auto* p = static_cast<char*>(data);
  for (int64_t done = 0; done < bytes; done += kMaxCount) {
    const int n = static_cast<int>(std::min(kMaxCount, bytes - done));
    check_mpi(MPI_Bcast(p + done, n, MPI_BYTE, root, comm_), "broadcast");
  }
  stats_.broadcast_bytes += bytes;
  ++stats_.calls;
}

void Communicator::send(const void* data, int64_t bytes, int dest, int tag) {
  const auto* p = static_cast<const char*>(data);
  for (int64_t done = 0; done < bytes || (bytes == 0 && done == 0); done += kMaxCount) {
    const int n = static_cast<int>(std::min(kMaxCount, bytes - done));
    check_mpi(MPI_Send(p + done, n, MPI_BYTE, dest, tag, comm_), "send");
    if (bytes == 0) break;
  }
  stats_.p2p_bytes += bytes;
}

Communicator::SendRequest Communicator::start_send(const void* data, int64_t bytes, int dest,
                                                   int tag) {
  const auto* p = static_cast<const char*>(data);
  SendRequest request;
  for (int64_t done = 0; done < bytes || (bytes == 0 && done == 0); done += kMaxCount) {
    const int n = static_cast<int>(std::min(kMaxCount, bytes - done));
    request.emplace_back(MPI_REQUEST_NULL);
    check_mpi(MPI_Isend(p + done, n, MPI_BYTE, dest, tag, comm_, &request.back()), "send");
    if (bytes == 0) break;
  }
  stats_.p2p_bytes += bytes;
  return request;
}

bool Communicator::send_done(SendRequest& request) {
  int done = 0;
  check_mpi(
      MPI_Testall(static_cast<int>(request.size()), request.data(), &done, MPI_STATUSES_IGNORE),
      "send");
  return done != 0;
}

void Communicator::wait_send(SendRequest& request) {
  check_mpi(MPI_Waitall(static_cast<int>(request.size()), request.data(), MPI_STATUSES_IGNORE),
            "send");
}

void Communicator::recv(void* data, int64_t bytes, int source, int tag) {
  auto* p = static_cast<char*>(data);
  for (int64_t done = 0; done < bytes || (bytes == 0 && done == 0); done += kMaxCount) {
    const int n = static_cast<int>(std::min(kMaxCount, bytes - done));
    MPI_Status status;
    check_mpi(MPI_Recv(p + done, n, MPI_BYTE, source, tag, comm_, &status), "recv");
    int got = 0;
    MPI_Get_count(&status, MPI_BYTE, &got);
    TURBINE_CHECK(got == n, "recv: {} bytes from rank {} (tag {}), expected {}", got, source, tag,
                  n);
    if (bytes == 0) break;
  }
  stats_.p2p_bytes += bytes;
}

int Communicator::recv_any(void* data, int64_t bytes, int tag) {
  MPI_Status status;
  check_mpi(MPI_Probe(MPI_ANY_SOURCE, tag, comm_, &status), "probe");
  recv(data, bytes, status.MPI_SOURCE, tag);
  return status.MPI_SOURCE;
}

int Communicator::probe(int tag, int source, int* found_tag) {
  int ready = 0;
  MPI_Status status;
  check_mpi(MPI_Iprobe(source < 0 ? MPI_ANY_SOURCE : source, tag < 0 ? MPI_ANY_TAG : tag, comm_,
                       &ready, &status),
            "probe");
  if (ready && found_tag) *found_tag = status.MPI_TAG;
  return ready ? status.MPI_SOURCE : -1;
}

void Communicator::broadcast_idle(void* data, int64_t bytes, int root, int poll_us) {
  TURBINE_CHECK(bytes < kMaxCount, "broadcast_idle: {} bytes; use broadcast", bytes);
  MPI_Request request = MPI_REQUEST_NULL;
  check_mpi(MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_, &request),
            "broadcast");
  const auto start = std::chrono::steady_clock::now();
  for (int done = 0;;) {
    check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "broadcast");
    if (done) break;
    if (std::chrono::steady_clock::now() - start > std::chrono::milliseconds(1))
      std::this_thread::sleep_for(std::chrono::microseconds(poll_us));
  }
  stats_.broadcast_bytes += bytes;
  ++stats_.calls;
}

void Communicator::all_to_all(const void* send, void* recv, int64_t block, DType dtype) {
  const int64_t bytes = block * size_ * int64_t(dtype_size(dtype));
  check_out_of_place("all_to_all", send, bytes, recv, bytes);
  const int n = block_count("all_to_all", block);
  check_mpi(MPI_Alltoall(send, n, mpi_type(dtype), recv, n, mpi_type(dtype), comm_), "alltoall");
  stats_.all_to_all_bytes += bytes;
  ++stats_.calls;
}

void Communicator::allgather(const void* send, void* recv, int64_t block, DType dtype) {
  const int64_t bytes = block * int64_t(dtype_size(dtype));
  check_out_of_place("allgather", send, bytes, recv, bytes * size_);
  const int n = block_count("allgather", block);
  check_mpi(MPI_Allgather(send, n, mpi_type(dtype), recv, n, mpi_type(dtype), comm_), "allgather");
  stats_.allgather_bytes += bytes * size_;
  ++stats_.calls;
}

void Communicator::reduce_scatter_sum(const void* send, void* recv, int64_t block, DType dtype) {
  // MPI has no 16-bit float sum; summing their bit patterns as integers
  // would be silently wrong.
  TURBINE_CHECK(dtype == DType::f32,
                "reduce_scatter_sum of {} over MPI: only f32 sums are supported on host "
                "memory; convert to f32 first",
                dtype_name(dtype));
  const int64_t bytes = block * int64_t(dtype_size(dtype));
  check_out_of_place("reduce_scatter_sum", send, bytes * size_, recv, bytes);
  const int n = block_count("reduce_scatter_sum", block);
  check_mpi(MPI_Reduce_scatter_block(send, recv, n, MPI_FLOAT, MPI_SUM, comm_), "reduce_scatter");
  stats_.reduce_scatter_bytes += bytes * size_;
  ++stats_.calls;
}

void Communicator::start_allreduce_sum(float* data, int64_t count) {
  for (int64_t done = 0; done < count; done += kMaxCount) {
    const int n = static_cast<int>(std::min(kMaxCount, count - done));
    MPI_Request request;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data + done, n, MPI_FLOAT, MPI_SUM, comm_, &request),
              "iallreduce");
    pending_.push_back(request);
  }
  stats_.allreduce_bytes += count * 4;
  ++stats_.calls;
}

void Communicator::start_reduce_sum(float* data, int64_t count, int root) {
  for (int64_t done = 0; done < count; done += kMaxCount) {
    const int n = static_cast<int>(std::min(kMaxCount, count - done));
    MPI_Request request;
    if (rank_ == root)
      check_mpi(
          MPI_Ireduce(MPI_IN_PLACE, data + done, n, MPI_FLOAT, MPI_SUM, root, comm_, &request),
          "ireduce");
    else
      check_mpi(MPI_Ireduce(data + done, nullptr, n, MPI_FLOAT, MPI_SUM, root, comm_, &request),
                "ireduce");
    pending_.push_back(request);
  }
  stats_.reduce_scatter_bytes += count * 4;
  ++stats_.calls;
}

void Communicator::wait_all() {
  if (pending_.empty()) return;
  check_mpi(MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE),
            "waitall");
  pending_.clear();
}

void Communicator::barrier() {
  check_mpi(MPI_Barrier(comm_), "barrier");
}

bool Communicator::any(bool value) {
  int flag = value ? 1 : 0;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, &flag, 1, MPI_INT, MPI_MAX, comm_), "allreduce");
  return flag != 0;
}

std::vector<std::string> Communicator::allgather_strings(const std::string& mine) {
  const int64_t length = int64_t(mine.size());
  std::vector<int64_t> lengths(static_cast<size_t>(size_));
  allgather(&length, lengths.data(), 1, DType::i64);
  const int64_t block = std::max<int64_t>(1, *std::max_element(lengths.begin(), lengths.end()));
  std::vector<char> send(size_t(block), 0), all(size_t(block * size_));
  std::copy(mine.begin(), mine.end(), send.begin());
  allgather(send.data(), all.data(), block, DType::u8);
  std::vector<std::string> out;
  for (int r = 0; r < size_; ++r)
    out.emplace_back(all.data() + r * block, size_t(lengths[size_t(r)]));
  return out;
}

std::string Communicator::broadcast_string(const std::string& text, int root) {
  int64_t length = int64_t(text.size());
  broadcast(&length, sizeof(length), root);
  std::string out = rank_ == root ? text : std::string(size_t(length), '\0');
  if (length > 0) broadcast(out.data(), length, root);
  return out;
}

}  // namespace turbine::dist
