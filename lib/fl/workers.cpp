// The process manager of workers.hpp.
#include "fl/workers.hpp"

#include <algorithm>
#include <array>
#include <thread>

#include "core/error.hpp"
#include "core/log.hpp"

namespace turbine::fl {

namespace {

constexpr int kTagTask = 31, kTagHeader = 32, kTagWeights = 33, kTagModel = 34;
constexpr int kTaskDoubles = 8, kHeaderDoubles = 15;
// A task whose client is negative ends the service; index 1 says "stopped early".
constexpr double kEnd = -1;

// Doubles carry the seed's 64 bits as two exact halves.
std::array<double, kTaskDoubles> pack(const ClientTask& t) {
  return {double(t.client),
          double(t.index),
          t.share,
          t.memory_mb,
          double(t.batch_size),
          double(t.local_steps),
          double(t.seed >> 32),
          double(t.seed & 0xffffffffULL)};
}

ClientTask unpack(const std::array<double, kTaskDoubles>& v) {
  ClientTask t;
  t.client = int64_t(v[0]);
  t.index = int64_t(v[1]);
  t.share = v[2];
  t.memory_mb = v[3];
  t.batch_size = int64_t(v[4]);
  t.local_steps = int64_t(v[5]);
  t.seed = (uint64_t(v[6]) << 32) | uint64_t(v[7]);
  return t;
}

std::array<double, kHeaderDoubles> header_of(const ClientOutcome& o) {
  return {double(o.task.client),  double(o.task.index),
          double(int(o.status)),  double(o.result.num_examples),
          double(o.result.steps), o.result.train_loss,
          o.result.seconds,       o.cpu_seconds,
          o.slept_seconds,        double(o.peak_bytes),
          double(o.threads),      o.result.eval_loss,
          o.result.eval_accuracy, double(o.result.eval_count),
          double(o.sms)};
}

ClientOutcome outcome_of(const std::array<double, kHeaderDoubles>& h) {
  ClientOutcome o;
  o.task.client = int64_t(h[0]);
  o.task.index = int64_t(h[1]);
  o.status = ClientStatus(int(h[2]));
  o.result.num_examples = int64_t(h[3]);
  o.result.steps = int64_t(h[4]);
  o.result.train_loss = h[5];
  o.result.seconds = h[6];
  o.cpu_seconds = h[7];
  o.slept_seconds = h[8];
  o.peak_bytes = int64_t(h[9]);
  o.threads = int(h[10]);
  o.result.eval_loss = h[11];
  o.result.eval_accuracy = h[12];
  o.result.eval_count = int64_t(h[13]);
  o.sms = int(h[14]);
  return o;
}

}  // namespace

bool serve_clients(dist::Communicator& comm, ClientPool& pool) {
  std::optional<bool> ended;  // set by the end message: stopped early?
  std::vector<float> model;
  // Results on their way to rank 0: sent without waiting, so that this loop
  // keeps receiving (rank 0 may be sending a model meanwhile: two blocking
  // sends of large buffers towards each other would wait forever).
  struct Sending {
    std::array<double, kHeaderDoubles> header;
    std::vector<float> weights;
    dist::Communicator::SendRequest header_request, weights_request;
  };
  std::deque<Sending> sending;
  auto sent = [&] {
    while (!sending.empty() && comm.send_done(sending.front().header_request) &&
           (sending.front().weights_request.empty() ||
            comm.send_done(sending.front().weights_request)))
      sending.pop_front();
  };
  for (;;) {
    sent();
    int tag = -1;
    // One probe for every tag: rank 0's messages are handled in the order sent.
    if (!ended && comm.probe(-1, 0, &tag) >= 0) {
      if (tag == kTagModel) {
        int64_t numel = 0;
        comm.recv(&numel, sizeof numel, 0, kTagModel);
        model.resize(static_cast<size_t>(numel));
        comm.recv(model.data(), numel * int64_t(sizeof(float)), 0, kTagModel);
        pool.set_global(model);
      } else {
        TURBINE_CHECK(tag == kTagTask, "fedsim worker {}: unexpected message tag {} from rank 0",
                      comm.rank(), tag);
        std::array<double, kTaskDoubles> task;
        comm.recv(task.data(), sizeof task, 0, kTagTask);
        if (task[0] == kEnd)
          ended = task[1] != 0;
        else
          pool.start(unpack(task));
      }
      continue;
    }
    const bool busy = pool.running() > 0;
    if (auto out = pool.finished(busy ? 5e-4 : 0)) {
      if (out->status == ClientStatus::out_of_memory) log::warn("{}", out->error);
      Sending& s = sending.emplace_back();
      s.header = header_of(*out);
      s.header_request = comm.start_send(s.header.data(), sizeof s.header, 0, kTagHeader);
      if (out->status == ClientStatus::ok) {
        s.weights = std::move(out->result.weights);
        s.weights_request = comm.start_send(
            s.weights.data(), int64_t(s.weights.size() * sizeof(float)), 0, kTagWeights);
      }
      continue;
    }
    if (ended && !busy) {
      for (Sending& s : sending) {
        comm.wait_send(s.header_request);
        if (!s.weights_request.empty()) comm.wait_send(s.weights_request);
      }
      return *ended;
    }
    if (!busy) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

WorkerGroup::WorkerGroup(dist::Communicator& comm, ClientPool* local, int64_t numel,
                         std::string scheduler, double worker_memory_mb)
    : comm_(comm),
      local_(local),
      numel_(numel),
      scheduler_(std::move(scheduler)),
      worker_memory_mb_(worker_memory_mb),
      workers_(std::max(1, comm.size() - 1)),
      remote_(comm.size() > 1) {
  TURBINE_CHECK(remote_ || local_ != nullptr, "fedsim: one rank and no local client pool");
  worker_version_.assign(size_t(workers_), -1);
  free_share_.assign(size_t(workers_), 1.0);
  free_memory_.assign(size_t(workers_), worker_memory_mb);
  in_flight_.assign(size_t(workers_), 0);
  dealt_.resize(size_t(workers_));
}

void WorkerGroup::set_model(const std::vector<float>& weights) {
  TURBINE_CHECK(int64_t(weights.size()) == numel_, "fedsim: a model of {} weights, not {}",
                weights.size(), numel_);
  model_ = weights;
  ++model_version_;
  if (!remote_) local_->set_global(model_);
}

void WorkerGroup::submit(const ClientTask& task, double predicted_seconds) {
  ++outstanding_;
  if (scheduler_ == "naive") {
    const int w = int(dealt_count_++ % workers_);
    dealt_[size_t(w)].push_back({task, predicted_seconds});
    fill(w);
    return;
  }
  // Longest predicted first; ties in submission order.
  const auto at = std::find_if(pending_.begin(), pending_.end(),
                               [&](const Queued& q) { return q.predicted < predicted_seconds; });
  pending_.insert(at, {task, predicted_seconds});
  for (int w = 0; w < workers_; ++w) fill(w);
}

void WorkerGroup::send(int w, const Queued& q) {
  const ClientTask& t = q.task;
  free_share_[size_t(w)] -= t.share;
  free_memory_[size_t(w)] -= t.memory_mb;
  ++in_flight_[size_t(w)];
  running_[t.index] = {t, std::chrono::steady_clock::now()};
  if (!remote_) {
    local_->start(t);
    return;
  }
  if (worker_version_[size_t(w)] != model_version_) {  // the model this task starts from
    comm_.send(&numel_, sizeof numel_, w + 1, kTagModel);
    comm_.send(model_.data(), numel_ * int64_t(sizeof(float)), w + 1, kTagModel);
    worker_version_[size_t(w)] = model_version_;
  }
  const auto v = pack(t);
  comm_.send(v.data(), sizeof v, w + 1, kTagTask);
}

void WorkerGroup::fill(int w) {
  if (scheduler_ == "naive") {
    auto& mine = dealt_[size_t(w)];
    if (in_flight_[size_t(w)] == 0 && !mine.empty()) {
      send(w, mine.front());
      mine.pop_front();
    }
    return;
  }
  for (auto it = pending_.begin(); it != pending_.end();) {
    const ClientTask& t = it->task;
    const bool fits = t.share <= free_share_[size_t(w)] + 1e-9 &&
                      (worker_memory_mb_ <= 0 || t.memory_mb <= free_memory_[size_t(w)] + 1e-9);
    if (fits) {
      send(w, *it);
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<double> WorkerGroup::running_for(int64_t index) const {
  const auto it = running_.find(index);
  if (it == running_.end()) return std::nullopt;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - it->second.second)
      .count();
}

std::optional<Ran> WorkerGroup::next(double timeout_s) {
  if (outstanding_ == 0) return std::nullopt;
  ClientOutcome out;
  int w = 0;
  if (remote_) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    int source = -1;
    for (auto idle = std::chrono::steady_clock::now(); (source = comm_.probe(kTagHeader)) < 0;) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= until) return std::nullopt;
      if (now - idle > std::chrono::milliseconds(1))
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    std::array<double, kHeaderDoubles> header;
    comm_.recv(header.data(), sizeof header, source, kTagHeader);
    out = outcome_of(header);
    if (out.status == ClientStatus::ok) {
      out.result.weights.resize(static_cast<size_t>(numel_));
      comm_.recv(out.result.weights.data(), numel_ * int64_t(sizeof(float)), source, kTagWeights);
    }
    w = source - 1;
  } else {
    std::optional<ClientOutcome> done = local_->finished(timeout_s);
    if (!done) return std::nullopt;
    out = std::move(*done);
    if (out.status == ClientStatus::out_of_memory) log::warn("{}", out.error);
  }
  const auto it = running_.find(out.task.index);
  TURBINE_CHECK(it != running_.end(), "fedsim: a result for task {} that is not running",
                out.task.index);
  out.task = it->second.first;
  running_.erase(it);
  free_share_[size_t(w)] += out.task.share;
  free_memory_[size_t(w)] += out.task.memory_mb;
  --in_flight_[size_t(w)];
  --outstanding_;
  Ran ran{std::move(out), w};
  fill(w);
  return ran;
}

void WorkerGroup::drain() {
  outstanding_ -= int64_t(pending_.size());
  pending_.clear();
  for (auto& mine : dealt_) {
    outstanding_ -= int64_t(mine.size());
    mine.clear();
  }
  while (outstanding_ > 0) next(0.05);
}

void WorkerGroup::shutdown(bool stopped_early) {
  if (shut_down_) return;
  shut_down_ = true;
  if (!remote_) return;
  for (int w = 1; w <= workers_; ++w) {
    const std::array<double, kTaskDoubles> end{kEnd, stopped_early ? 1.0 : 0.0, 0, 0, 0, 0, 0, 0};
    comm_.send(end.data(), sizeof end, w, kTagTask);
  }
}

}  // namespace turbine::fl
