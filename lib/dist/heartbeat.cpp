// Heartbeats between ranks (see heartbeat.hpp).
#include "dist/heartbeat.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.hpp"
#include "core/log.hpp"

namespace turbine::dist {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kTag = 7301;
constexpr int kBeat = 1, kGoodbye = 2;
constexpr int kHostChars = 64;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

HeartbeatOptions HeartbeatOptions::from_environment() {
  HeartbeatOptions options;
  if (const char* text = std::getenv("TURBINE_HEARTBEAT_TIMEOUT"); text && *text) {
    char* end = nullptr;
    const double value = std::strtod(text, &end);
    TURBINE_CHECK(end && *end == '\0' && std::isfinite(value) && value >= 0,
                  "TURBINE_HEARTBEAT_TIMEOUT={}: give the seconds after which a silent rank "
                  "ends the job (e.g. 300), or 0 for no heartbeat",
                  text);
    options.timeout_s = value;
  }
  options.interval_s = std::clamp(options.timeout_s / 10, 0.1, 10.0);
  return options;
}

Heartbeat::Heartbeat(const Communicator& world, HeartbeatOptions options) : options_(options) {
  size_ = world.size();
  rank_ = world.rank();
  if (size_ == 1 || options_.timeout_s <= 0) return;
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_MULTIPLE) {
    if (rank_ == 0)
      log::warn(
          "this MPI gives no MPI_THREAD_MULTIPLE: no heartbeat, so a rank that stops "
          "answering is not detected (the job waits until its time limit)");
    return;
  }
  check_mpi(MPI_Comm_dup(world.handle(), &comm_), "heartbeat communicator");
  std::array<char, kHostChars> mine{};
  gethostname(mine.data(), mine.size() - 1);
  std::vector<char> all(size_t(size_) * kHostChars);
  check_mpi(
      MPI_Allgather(mine.data(), kHostChars, MPI_CHAR, all.data(), kHostChars, MPI_CHAR, comm_),
      "heartbeat hosts");
  long pid = long(getpid());
  pids_.resize(size_);
  check_mpi(MPI_Allgather(&pid, 1, MPI_LONG, pids_.data(), 1, MPI_LONG, comm_), "heartbeat pids");
  for (int r = 0; r < size_; ++r)
    hosts_.emplace_back(all.data() + size_t(r) * kHostChars,
                        strnlen(all.data() + size_t(r) * kHostChars, kHostChars));
  thread_ = std::thread([this] { watch(); });
}

Heartbeat::~Heartbeat() {
  if (thread_.joinable()) {
    leaving_ = true;
    wake_.notify_all();
    thread_.join();
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm_);
}

void Heartbeat::lost(int peer, double silent_s) {
  log::error(
      "rank {} (host {}, pid {}) has not answered for {:.1f} s (heartbeat timeout {:g} s): it "
      "is stopped, hung or its node is lost. Ending the job (exit status {}); the checkpoints "
      "written so far are complete: continue with --resume",
      peer, hosts_[peer], pids_[peer], silent_s, options_.timeout_s, kExitRankLost);
  // Not MPI_Abort: Open MPI 4.1's mpirun crashed (in pmix_server_log_fn) relaying
  // the abort's help message from a rank on another host. A rank that exits
  // before MPI_Finalize ends the job as surely: mpirun, or srun with
  // --kill-on-bad-exit, kills the others (a stopped process too) and exits
  // with this status.
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(kExitRankLost);
}

// The thread: rank 0 watches ranks 1..n-1, they watch rank 0. Each peer has
// one receive posted and at most one send in flight (a beat that cannot
// leave because the peer stopped taking them is not queued behind another).
void Heartbeat::watch() {
  std::vector<int> peers;
  if (rank_ == 0) {
    for (int r = 1; r < size_; ++r) peers.push_back(r);
  } else {
    peers.push_back(0);
  }
  const size_t n = peers.size();
  std::vector<int> in(n, 0), out(n, 0);
  std::vector<MPI_Request> recv(n, MPI_REQUEST_NULL), send(n, MPI_REQUEST_NULL);
  std::vector<Clock::time_point> heard(n, Clock::now());
  std::vector<bool> gone(n, false), said_goodbye(n, false);
  for (size_t i = 0; i < n; ++i) MPI_Irecv(&in[i], 1, MPI_INT, peers[i], kTag, comm_, &recv[i]);

  const auto interval = std::chrono::duration<double>(options_.interval_s);
  const auto poll = std::chrono::duration<double>(std::min(options_.interval_s / 4, 0.05));
  Clock::time_point next_beat = Clock::now();
  while (true) {
    const bool leaving = leaving_;
    for (size_t i = 0; i < n; ++i) {
      int done = 0;
      if (recv[i] != MPI_REQUEST_NULL) MPI_Test(&recv[i], &done, MPI_STATUS_IGNORE);
      if (!done) continue;
      heard[i] = Clock::now();
      if (in[i] == kGoodbye) {
        gone[i] = true;
      } else {
        MPI_Irecv(&in[i], 1, MPI_INT, peers[i], kTag, comm_, &recv[i]);
      }
    }
    const bool beat_due = Clock::now() >= next_beat;
    for (size_t i = 0; i < n; ++i) {
      if (said_goodbye[i]) continue;
      int done = 1;
      if (send[i] != MPI_REQUEST_NULL) MPI_Test(&send[i], &done, MPI_STATUS_IGNORE);
      if (!done || !(beat_due || leaving)) continue;
      // A peer that left takes no more beats, but still our goodbye.
      if (gone[i] && !leaving) continue;
      out[i] = leaving ? kGoodbye : kBeat;
      said_goodbye[i] = leaving;
      // The goodbye is synchronous: it completes only once the peer has
      // taken it, which a send buffered in a transport (TCP) would not wait
      // for before MPI_Finalize stops making progress.
      if (leaving)
        MPI_Issend(&out[i], 1, MPI_INT, peers[i], kTag, comm_, &send[i]);
      else
        MPI_Isend(&out[i], 1, MPI_INT, peers[i], kTag, comm_, &send[i]);
    }
    if (beat_due) next_beat = Clock::now() + std::chrono::duration_cast<Clock::duration>(interval);
    for (size_t i = 0; i < n; ++i) {
      const double silent = seconds_since(heard[i]);
      if (!gone[i] && silent > options_.timeout_s) lost(peers[i], silent);
    }
    if (leaving) {
      bool all_sent = true;  // and taken
      for (size_t i = 0; i < n; ++i) {
        int done = 1;
        if (send[i] != MPI_REQUEST_NULL) MPI_Test(&send[i], &done, MPI_STATUS_IGNORE);
        all_sent = all_sent && said_goodbye[i] && done;
      }
      const bool all_gone = std::all_of(gone.begin(), gone.end(), [](bool b) { return b; });
      if (all_sent && all_gone) break;
    }
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, poll, [&] { return leaving_ && !leaving; });
  }
  for (size_t i = 0; i < n; ++i) {
    if (send[i] != MPI_REQUEST_NULL) MPI_Wait(&send[i], MPI_STATUS_IGNORE);
  }
}

}  // namespace turbine::dist
