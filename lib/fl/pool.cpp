// The worker's client pool of pool.hpp.
#include "fl/pool.hpp"

#include <chrono>
#include <thread>

#include "core/error.hpp"
#include "fl/budget.hpp"
#include "tensor/tensor.hpp"

namespace turbine::fl {

GpuShare gpu_share_named(const std::string& name) {
  if (name == "auto") return GpuShare::automatic;
  if (name == "sm_partition") return GpuShare::sm_partition;
  if (name == "time_slice") return GpuShare::time_slice;
  TURBINE_FAIL("budget.gpu_share is {}: auto, sm_partition or time_slice expected", name);
}

ClientPool::ClientPool(const Task& task, Device device,
                       const std::vector<std::vector<int64_t>>& parts, const LocalTraining& local,
                       double cores, GpuShare gpu)
    : task_(task), device_(device), parts_(parts), local_(local), cores_(cores) {
  TURBINE_CHECK(cores >= 1, "a worker needs at least one core, got {}", cores);
  partitions_ = gpu_partitions(device, gpu);
}

bool gpu_partitions(Device device, GpuShare gpu, std::string* note) {
  if (!device.is_cuda()) return false;
  const kernels::Backend::LaneSupport support = backend_for(device).lanes();
  TURBINE_CHECK(gpu != GpuShare::sm_partition || support.partition,
                "budget.gpu_share is sm_partition, but {}; use auto or time_slice",
                support.why_not);
  const bool partitions = gpu != GpuShare::time_slice && support.partition;
  if (note)
    *note = partitions                    ? "SM partitions (green contexts)"
            : gpu == GpuShare::time_slice ? "time slices (budget.gpu_share: time_slice)"
                                          : fmt::format("time slices ({})", support.why_not);
  return partitions;
}

ClientPool::~ClientPool() {
  for (auto& slot : slots_)
    if (slot->thread.joinable()) slot->thread.join();
}

void ClientPool::set_global(std::vector<float> global) {
  std::lock_guard lock(mutex_);
  global_ = std::make_shared<const std::vector<float>>(std::move(global));
}

int64_t ClientPool::running() const {
  std::lock_guard lock(mutex_);
  int64_t n = 0;
  for (const auto& slot : slots_) n += slot->busy ? 1 : 0;
  return n;
}

LocalTraining local_for(const LocalTraining& base, const ClientTask& task) {
  LocalTraining local = base;
  if (task.batch_size > 0) local.batch_size = task.batch_size;
  if (task.local_steps > 0) {  // exactly this many steps, over as many epochs as it takes
    local.epochs = task.local_steps;
    local.max_steps = task.local_steps;
  }
  return local;
}

ClientOutcome ClientPool::run(Slot& slot, const ClientTask& task,
                              const std::shared_ptr<const std::vector<float>>& global) {
  ClientOutcome out;
  out.task = task;
  const auto started = std::chrono::steady_clock::now();
  CpuBudget cpu(task.share, cores_);
  // On a GPU the client's work goes to a lane of its own: with a partition
  // the device holds it to its share, and the host only feeds it.
  std::unique_ptr<kernels::Backend::Lane> lane;
  if (device_.is_cuda()) lane = backend_for(device_).open_lane(task.share, partitions_);
  out.sms = lane ? lane->units() : 0;
  const bool paced = out.sms == 0;  // on its own SMs it is never paced
  if (device_.is_cuda() && paced) {
    // On a GPU the client's thread mostly waits for its kernels: its share is
    // a time slice of the device instead, paced by busy wall time (the step's
    // loss is read back, so a step's wall time is its GPU time).
    auto wall = [] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
          .count();
    };
    auto busy = std::make_shared<double>(0);  // slept seconds, subtracted from the wall
    cpu.start({[wall, busy] { return wall() - *busy; }, wall,
               [busy](double s) {
                 std::this_thread::sleep_for(std::chrono::duration<double>(s));
                 *busy += s;
               }});
  } else {
    cpu.start();
  }
  out.threads = cpu.threads();
  std::shared_ptr<MemoryBudget> memory;
  if (task.memory_mb > 0) {
    memory = std::make_shared<MemoryBudget>(int64_t(task.memory_mb * (1 << 20)),
                                            fmt::format("client {}", task.client));
  }
  try {
    if (memory) memory->charge(slot.trainer->resident_bytes());  // the model it holds
    const std::optional<ScopedMemoryBudget> scope =
        memory ? std::optional<ScopedMemoryBudget>(std::in_place, memory) : std::nullopt;
    out.result = slot.trainer->train(*global, parts_.at(size_t(task.client)),
                                     local_for(local_, task), task.seed, [&] {
                                       if (paced) cpu.pace();
                                     });
  } catch (const OutOfMemory& e) {
    out.status = ClientStatus::out_of_memory;
    out.error = e.what();
    out.result = LocalResult{};
    out.result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  }
  out.cpu_seconds = cpu.cpu_seconds();
  out.slept_seconds = cpu.slept_seconds();
  if (memory) out.peak_bytes = memory->peak_bytes();
  return out;
}

void ClientPool::start(const ClientTask& task) {
  TURBINE_CHECK(task.client >= 0 && task.client < int64_t(parts_.size()),
                "client pool: client {} of {}", task.client, parts_.size());
  Slot* slot = nullptr;
  std::shared_ptr<const std::vector<float>> global;
  {
    std::lock_guard lock(mutex_);
    TURBINE_CHECK(global_ && !global_->empty(), "client pool: no global model yet");
    global = global_;
    for (auto& s : slots_)
      if (!s->busy) {
        slot = s.get();
        break;
      }
  }
  if (slot == nullptr) {  // one more client at once than ever before: a new slot
    auto fresh = std::make_unique<Slot>();
    fresh->trainer = std::make_unique<ClientTrainer>(task_, device_);
    slot = fresh.get();
    std::lock_guard lock(mutex_);
    slots_.push_back(std::move(fresh));
  }
  if (slot->thread.joinable()) slot->thread.join();  // its last client's thread, done
  {
    std::lock_guard lock(mutex_);
    slot->busy = true;
  }
  slot->thread = std::thread([this, slot, task, global] {
    Done done{slot, {}, nullptr};
    try {
      done.outcome = run(*slot, task, global);
    } catch (...) {  // not the device's failure but the job's: finished() rethrows it
      done.error = std::current_exception();
    }
    std::lock_guard lock(mutex_);
    done_.push_back(std::move(done));
    done_cv_.notify_all();
  });
}

std::optional<ClientOutcome> ClientPool::finished(double timeout_s) {
  std::unique_lock lock(mutex_);
  if (done_.empty() && timeout_s > 0)
    done_cv_.wait_for(lock, std::chrono::duration<double>(timeout_s),
                      [&] { return !done_.empty(); });
  if (done_.empty()) return std::nullopt;
  Done done = std::move(done_.front());
  done_.pop_front();
  done.slot->busy = false;
  lock.unlock();
  done.slot->thread.join();
  if (done.error) std::rethrow_exception(done.error);
  return std::move(done.outcome);
}

}  // namespace turbine::fl
