// Streaming a BLOOM's blocks from a swap file or host memory (infer/stream.hpp).
#include "infer/stream.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"
#include "nn/compact.hpp"

namespace fs = std::filesystem;

namespace turbine::infer {

namespace {

// Every tensor a block computes with, in a fixed order: the norms, then each
// linear layer's weight (or compact values and scales) and bias.
std::vector<Tensor> block_tensors(const nn::BloomBlock& block) {
  std::vector<Tensor> out = {block.input_layernorm.weight, block.input_layernorm.bias,
                             block.post_attention_layernorm.weight,
                             block.post_attention_layernorm.bias};
  for (const nn::LinearLayer* layer : {block.query_key_value.get(), block.dense.get(),
                                       block.dense_h_to_4h.get(), block.dense_4h_to_h.get()}) {
    if (const auto* plain = dynamic_cast<const nn::Linear*>(layer)) {
      out.push_back(plain->weight);
      out.push_back(plain->bias);
    } else if (const auto* compact = dynamic_cast<const nn::CompactLinear*>(layer)) {
      out.push_back(compact->weight.values);
      out.push_back(compact->weight.scales);
      out.push_back(compact->bias);
    } else {
      TURBINE_FAIL("weight streaming supports plain and compact linear layers only");
    }
  }
  std::erase_if(out, [](const Tensor& t) { return !t.defined(); });
  return out;
}

nn::BloomBlock make_block(const nn::BloomConfig& config, Device device, DType type, int group) {
  nn::Init init{0, 0, config.initializer_range, device};
  nn::BloomBlock block(config, init);
  if (type != DType::f32) nn::compact_block(block, type, group);
  return block;
}

}  // namespace

BlockStreamer::BlockStreamer(const nn::BloomConfig& config, Device device, DType type, int group,
                             const OffloadOptions& options, int64_t resident_bytes,
                             const std::function<void(int64_t, nn::BloomBlock&)>& load_block)
    : n_layer_(config.n_layer), device_(device), far_(options.device) {
  TURBINE_CHECK(far_ == "nvme" || far_ == "cpu",
                "inference.zero.offload_param.device '{}': streaming reads from nvme or cpu", far_);
  TURBINE_CHECK(!(far_ == "cpu" && device.is_cpu()),
                "inference.zero.offload_param.device cpu keeps the weights in host memory, where "
                "a CPU computes anyway: use nvme to stream them from disk");
  TURBINE_CHECK(n_layer_ > 0, "weight streaming: the model has no blocks");
  kernels::Backend& backend = backend_for(device);

  // The staged layout: one block's tensors back to back, every layer alike.
  const std::vector<Tensor> shape_of =
      block_tensors(make_block(config, Device::cpu(), type, group));
  for (const Tensor& t : shape_of) layer_bytes_ += int64_t(t.nbytes());
  int64_t slots = std::min<int64_t>(2, n_layer_);
  if (options.max_resident_mb > 0) {
    const double budget = options.max_resident_mb * 1048576.0;
    slots = std::min<int64_t>(n_layer_,
                              int64_t((budget - double(resident_bytes)) / double(layer_bytes_)));
    TURBINE_CHECK(slots >= 1,
                  "inference.zero.offload_param.max_resident_mb {} holds less than the "
                  "embeddings and LM head ({:.2f} MiB) and one layer ({:.2f} MiB): give at least "
                  "{:.2f}",
                  options.max_resident_mb, resident_bytes / 1048576.0, layer_bytes_ / 1048576.0,
                  (resident_bytes + layer_bytes_) / 1048576.0);
  }
  // Decode visits layers 0..n-1 again and again; layer i's slot is i mod
  // slots, and a released slot is given layer i + slots: with a slot count
  // that divides the layers this stays consistent across the wrap.
  while (n_layer_ % slots != 0) --slots;

  // Stage every layer in the far tier, one f32 block at a time.
  const uint64_t total = uint64_t(layer_bytes_) * uint64_t(n_layer_);
  std::string path;
  if (far_ == "nvme") {
    const fs::path dir =
        options.nvme_path.empty() ? fs::temp_directory_path() : fs::path(options.nvme_path);
    TURBINE_CHECK(fs::is_directory(dir),
                  "inference.zero.offload_param.nvme_path {} is not a folder", dir.string());
    path = (dir / "turbine-weights-XXXXXX").string();
    fd_ = ::mkstemp(path.data());
    TURBINE_CHECK(fd_ >= 0, "cannot create the weights' swap file in {}: {}", dir.string(),
                  std::strerror(errno));
    ::unlink(path.c_str());  // gone with the process, however it ends
    swap_name_ = "the weights' swap file " + path + " (deleted)";
  } else {
    host_ = backend.allocate_host(total);
  }
  try {
    for (int64_t i = 0; i < n_layer_; ++i) {
      nn::Init init{uint64_t(i) + 1, 0, config.initializer_range, Device::cpu()};
      nn::BloomBlock block(config, init);
      load_block(i, block);
      if (type != DType::f32) nn::compact_block(block, type, group);
      uint64_t offset = uint64_t(i) * uint64_t(layer_bytes_);
      for (const Tensor& t : block_tensors(block)) {
        if (far_ == "nvme")
          write_exact(fd_, t.raw_data(), t.nbytes(), offset, swap_name_);
        else
          std::memcpy(static_cast<char*>(host_) + offset, t.raw_data(), t.nbytes());
        offset += t.nbytes();
      }
    }
    if (far_ == "nvme") {
      TURBINE_CHECK(::fdatasync(fd_) == 0, "{}: {}", swap_name_, std::strerror(errno));
      ::posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED);  // reads come from the disk
    }

    slots_.reserve(size_t(slots));
    for (int64_t s = 0; s < slots; ++s) {
      Slot slot{make_block(config, device, type, group), {}, nullptr, -1, -1, false};
      slot.tensors = block_tensors(slot.block);
      if (!device.is_cpu() && far_ == "nvme") slot.staging = backend.allocate_host(layer_bytes_);
      slots_.push_back(std::move(slot));
    }
  } catch (...) {
    free_buffers();
    throw;
  }
  log::info("weights: {} layers of {:.2f} MiB streamed from {} through {} resident slot(s)",
            n_layer_, layer_bytes_ / 1048576.0,
            far_ == "nvme" ? "a swap file in " + fs::path(path).parent_path().string()
                           : std::string("host memory"),
            slots);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int64_t s = 0; s < slots; ++s) request(slots_[size_t(s)], s);
  }
  worker_ = std::thread([this] { run(); });
}

BlockStreamer::~BlockStreamer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  free_buffers();
}

void BlockStreamer::free_buffers() {
  kernels::Backend& backend = backend_for(device_);
  for (Slot& slot : slots_)
    if (slot.staging) backend.deallocate_host(slot.staging, size_t(layer_bytes_));
  slots_.clear();
  if (host_) backend.deallocate_host(host_, size_t(layer_bytes_) * size_t(n_layer_));
  host_ = nullptr;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void BlockStreamer::request(Slot& slot, int64_t layer) {
  slot.wanted = layer;
  if (slot.loaded == layer) return;
  slot.loaded = -1;
  queue_.push_back(&slot);
  cv_.notify_all();
}

void BlockStreamer::read_layer(int64_t layer, Slot& slot) {
  const uint64_t base = uint64_t(layer) * uint64_t(layer_bytes_);
  if (far_ == "cpu") return;  // acquire copies from host memory directly
  if (device_.is_cpu()) {
    uint64_t offset = base;
    for (const Tensor& t : slot.tensors) {
      read_exact(fd_, t.raw_data(), t.nbytes(), offset, swap_name_);
      offset += t.nbytes();
    }
  } else {
    read_exact(fd_, slot.staging, size_t(layer_bytes_), base, swap_name_);
  }
  ::posix_fadvise(fd_, off_t(base), off_t(layer_bytes_), POSIX_FADV_DONTNEED);
}

void BlockStreamer::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    Slot& slot = *queue_.front();
    queue_.pop_front();
    const int64_t layer = slot.wanted;
    if (slot.loaded == layer) continue;
    lock.unlock();
    Timer timer;
    std::string error;
    try {
      read_layer(layer, slot);
    } catch (const std::exception& e) {
      error = e.what();
    }
    const double seconds = timer.seconds();
    lock.lock();
    if (!error.empty()) failure_ = error;
    stats_.read_seconds += seconds;
    stats_.layers_read += 1;
    stats_.bytes_read += double(layer_bytes_);
    if (slot.wanted == layer) {
      slot.loaded = layer;
      slot.in_transfer = !device_.is_cpu();
    } else {
      queue_.push_back(&slot);  // re-targeted while it was read
    }
    cv_.notify_all();
  }
}

const nn::BloomBlock& BlockStreamer::acquire(int64_t layer) {
  TURBINE_CHECK(layer >= 0 && layer < n_layer_, "BlockStreamer: no layer {}", layer);
  Timer timer;
  std::unique_lock<std::mutex> lock(mu_);
  Slot& slot = slots_[size_t(layer % int64_t(slots_.size()))];
  if (slot.wanted != layer) request(slot, layer);  // out of order (a decode cut short)
  cv_.wait(lock, [&] { return slot.loaded == layer || !failure_.empty(); });
  TURBINE_CHECK(failure_.empty(), "weight streaming failed: {}", failure_);
  stats_.wait_seconds += timer.seconds();
  if (slot.in_transfer) {  // on a GPU: host to device, on the transfer stream
    kernels::Backend& backend = backend_for(device_);
    const char* source =
        far_ == "cpu" ? static_cast<const char*>(host_) + uint64_t(layer) * uint64_t(layer_bytes_)
                      : static_cast<const char*>(slot.staging);
    for (const Tensor& t : slot.tensors) {
      backend.copy_from_host_async(t.raw_data(), source, t.nbytes());
      source += t.nbytes();
    }
    // The host waits, so the staging buffer may be refilled; kernels queued
    // after this point see the weights.
    backend.synchronize_transfers();
    backend.wait_for_transfers();
    slot.in_transfer = false;
  }
  return slot.block;
}

void BlockStreamer::release(int64_t layer) {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t k = int64_t(slots_.size());
  request(slots_[size_t(layer % k)], (layer + k) % n_layer_);
}

StreamStats BlockStreamer::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace turbine::infer
