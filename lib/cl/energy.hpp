// The energy of cl-edge's training (issue 18): Miro (Ma et al., MobiCom
// 2023) chooses the memory configuration by accuracy per joule, so every
// run reports joules, measured where the machine can and always modelled.
//
// Modelled: a DeviceProfile (configs/devices/*.yaml: whole-board power
// busy and idle, DRAM and storage energy per byte, each figure with its
// source) applied to an EnergyUsage (seconds busy and in all, GiB x seconds
// of replay memory held in DRAM, bytes moved through DRAM and storage).
// The model is what makes runs on different machines comparable, and what a
// run on a laptop or a VM can say about a Jetson: it is the same numbers
// whatever the host.
//
// Measured: RaplMeter sums the RAPL package counters of
// /sys/class/powercap (Intel, and AMD since Zen through the same driver),
// the energy of the whole host's CPU packages, not of this process alone.
// Since Linux 5.10 energy_uj is readable by root only, and VMs rarely
// expose it: open() then says so by returning nothing. NvmlMeter reads a
// GPU's energy counter through NVML (the driver's libnvidia-ml, loaded at
// run time, so nothing links against it and a machine without it runs on).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace turbine::cl {

struct DeviceProfile {
  std::string name;
  std::string description;
  std::string source;                // where each figure comes from; which ones are estimates
  double busy_w = 0;                 // whole-board power while computing
  double idle_w = 0;                 // whole-board power while waiting
  double dram_static_w_per_gib = 0;  // holding a GiB resident (refresh, background)
  double dram_nj_per_byte = 0;       // moving a byte through DRAM
  double storage_read_nj_per_byte = 0;
  double storage_write_nj_per_byte = 0;
};

// `name_or_path`: a profile of `dir` (name.yaml there, e.g. "jetson-tx2"),
// or the path of a .yaml file (it ends in .yaml or .yml, or has a '/').
// Every key is required, numbers are finite and >= 0, unknown keys are
// refused; errors name the file, and an unknown profile lists those of `dir`.
DeviceProfile load_device_profile(const std::string& name_or_path, const std::string& dir);

// What a run did, in the units the profile prices.
struct EnergyUsage {
  double busy_s = 0;               // computing (training, replay, evaluation)
  double wall_s = 0;               // in all; wall_s - busy_s is idle when positive
  double resident_gib_s = 0;       // the replay memory's GiB x the seconds it was held
  double dram_bytes = 0;           // moved through DRAM: replay batches read, swaps installed
  double storage_read_bytes = 0;   // swaps read from the storage tier
  double storage_write_bytes = 0;  // samples appended to it
  EnergyUsage& operator+=(const EnergyUsage& other);
};

struct EnergyBreakdown {
  double compute_j = 0;      // busy_w x busy_s
  double idle_j = 0;         // idle_w x max(0, wall_s - busy_s)
  double dram_static_j = 0;  // dram_static_w_per_gib x resident_gib_s
  double dram_j = 0;         // dram_nj_per_byte x dram_bytes
  double storage_j = 0;      // read and write nJ per byte x their bytes
  double total_j = 0;        // the sum
  // {"compute_j", "idle_j", "dram_static_j", "dram_j", "storage_j", "total_j"}
  nlohmann::ordered_json to_json() const;
};

// Throws turbine::Error for a negative or non-finite usage, naming it.
EnergyBreakdown model_energy(const DeviceProfile& profile, const EnergyUsage& usage);

// The RAPL package zones of a powercap tree: the top-level zones
// intel-rapl:N (and amd-rapl:N where a kernel names them so) whose name is
// package-N or absent. Their subzones (core, uncore, dram) are inside the
// package's count, and a psys zone contains the packages, so neither is
// added. A counter wraps at its max_energy_range_uj (about 60 s to hours
// depending on the machine): joules() handles one wrap between two calls,
// so call it at least that often.
class RaplMeter {
 public:
  // Nothing when no zone's energy_uj and max_energy_range_uj are readable
  // (permissions, a VM, not Linux). `root` points a test at a fake tree.
  static std::optional<RaplMeter> open(const std::string& root = "/sys/class/powercap");
  // Joules of all zones since open(); throws turbine::Error naming the file
  // if a zone that was readable no longer is.
  double joules();
  // "intel-rapl:0 (package-0)", one per zone summed.
  std::vector<std::string> zones() const;

 private:
  struct Zone {
    std::string dir;
    std::string label;
    uint64_t max_uj = 0;
    uint64_t last_uj = 0;
  };
  explicit RaplMeter(std::vector<Zone> zones) : zones_(std::move(zones)) {}
  std::vector<Zone> zones_;
  double total_uj_ = 0;
};

// A GPU's total energy through NVML (nvmlDeviceGetTotalEnergyConsumption,
// millijoules since the driver loaded; Volta and later): the board's, not
// this process's alone.
class NvmlMeter {
 public:
  // CUDA's device `index` (through CUDA_VISIBLE_DEVICES when set, by index
  // or UUID). Nothing when libnvidia-ml.so.1 is absent, NVML does not
  // start, there is no such GPU, or it has no energy counter.
  static std::optional<NvmlMeter> open(int index);
  double joules();                                   // since open()
  const std::string& name() const { return name_; }  // "NVIDIA H200 (GPU 0)"

 private:
  using EnergyFn = int (*)(void*, unsigned long long*);
  NvmlMeter(void* device, EnergyFn energy, std::string name, unsigned long long start)
      : device_(device), energy_(energy), name_(std::move(name)), start_mj_(start) {}
  void* device_;
  EnergyFn energy_;
  std::string name_;
  unsigned long long start_mj_;
};

}  // namespace turbine::cl
