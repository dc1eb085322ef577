// Weight streaming (ZeRO-Inference, DeepSpeed's zero.offload_param): the
// blocks' weights stay outside the compute device's memory budget and come
// in layer by layer while decoding. They are staged once, at load, in the
// type they compute in (so int8 weights stream a quarter of f32's bytes):
//   nvme: in a swap file under nvme_path (unlinked at once, so it never
//         outlives the process), read back with pread and dropped from the
//         page cache after each read: the far tier really is the disk;
//   cpu:  in host memory (page-locked), for a model on a GPU.
// `slots` blocks are resident on the compute device; while decode computes
// layer i from one slot, a background thread reads the next layers into
// the others (on a GPU through page-locked staging buffers and the
// backend's transfer stream). Decode visits the layers in order and wraps
// around to layer 0 for the next step, so the prefetch never stalls between
// steps.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "nn/bloom.hpp"

namespace turbine::infer {

struct OffloadOptions {
  std::string device = "none";  // none, cpu or nvme
  std::string nvme_path;        // the swap file's folder; "": the system's temporary folder
  // Weights resident at once: the embeddings, norms and LM head plus the
  // slots; 0: two slots (read one layer while computing another).
  double max_resident_mb = 0;
};

// Where time went: waiting is decode blocked on a layer not yet read;
// reading is the background thread's time in pread (and transfers).
struct StreamStats {
  int64_t layers_read = 0;
  double bytes_read = 0;
  double wait_seconds = 0, read_seconds = 0;
};

class BlockStreamer final : public nn::BlockSource {
 public:
  // Stages every block: load_block(i, block) fills a block of the config's
  // shape (f32, on the CPU) with layer i's weights; it is then compacted to
  // `type` (f32 keeps it) with `group` inputs per int8 scale and written to
  // the far tier. resident_bytes: what the model holds besides the slots
  // (embeddings, LM head), counted against the budget.
  BlockStreamer(const nn::BloomConfig& config, Device device, DType type, int group,
                const OffloadOptions& options, int64_t resident_bytes,
                const std::function<void(int64_t, nn::BloomBlock&)>& load_block);
  ~BlockStreamer() override;
  BlockStreamer(const BlockStreamer&) = delete;
  BlockStreamer& operator=(const BlockStreamer&) = delete;

  const nn::BloomBlock& acquire(int64_t layer) override;
  void release(int64_t layer) override;

  int64_t slots() const { return int64_t(slots_.size()); }
  int64_t layer_bytes() const { return layer_bytes_; }
  StreamStats stats() const;

 private:
  struct Slot {
    nn::BloomBlock block;
    std::vector<Tensor> tensors;  // the block's storage, in staging order
    void* staging = nullptr;      // page-locked host buffer (GPU only)
    int64_t wanted = -1;          // the layer it is to hold
    int64_t loaded = -1;          // the layer it holds
    bool in_transfer = false;     // staged on the host, not yet on the device
  };
  void read_layer(int64_t layer, Slot& slot);  // background thread
  void request(Slot& slot, int64_t layer);     // with mu_ held
  void run();                                  // background thread
  void free_buffers();

  int64_t n_layer_ = 0, layer_bytes_ = 0;
  Device device_;
  std::string far_;        // "nvme" or "cpu"
  int fd_ = -1;            // nvme: the swap file
  std::string swap_name_;  // the swap file, for messages
  void* host_ = nullptr;   // cpu: every layer, page-locked
  std::vector<Slot> slots_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Slot*> queue_;  // slots whose wanted layer is to be read
  bool stopping_ = false;
  std::string failure_;  // a read error, reported by acquire
  StreamStats stats_;
  std::thread worker_;
};

}  // namespace turbine::infer
