// Device profiles, the energy model and the RAPL meter of energy.hpp.
#include "cl/energy.hpp"

#include <dlfcn.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "core/error.hpp"

namespace turbine::cl {

namespace fs = std::filesystem;

namespace {

constexpr double kJoulesPerNanojoule = 1e-9;
constexpr double kJoulesPerMicrojoule = 1e-6;

bool is_yaml_path(const std::string& text) {
  const auto ends_with = [&](const std::string& suffix) {
    return text.size() >= suffix.size() &&
           text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return text.find('/') != std::string::npos || ends_with(".yaml") || ends_with(".yml");
}

// The profiles of `dir`, by name, or why there are none.
std::string available_profiles(const std::string& dir) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) return fmt::format("{} is not a folder", dir);
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir, error))
    if (entry.path().extension() == ".yaml") names.push_back(entry.path().stem().string());
  if (names.empty()) return fmt::format("{} has none", dir);
  std::sort(names.begin(), names.end());
  return fmt::format("available: {}", fmt::join(names, ", "));
}

std::string text_of(const YAML::Node& node, const std::string& file, const std::string& key) {
  TURBINE_CHECK(node.IsScalar(), "device profile {}: {} must be a string", file, key);
  return node.as<std::string>();
}

double number_of(const YAML::Node& node, const std::string& file, const std::string& key) {
  double value = 0;
  TURBINE_CHECK(node.IsScalar() && YAML::convert<double>::decode(node, value),
                "device profile {}: {} must be a number", file, key);
  TURBINE_CHECK(std::isfinite(value) && value >= 0,
                "device profile {}: {} is {}; it must be a finite number >= 0", file, key, value);
  return value;
}

// The first line of a file, without its newline; nothing if unreadable.
std::optional<std::string> read_line(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return line;
}

std::optional<uint64_t> read_counter(const fs::path& path) {
  const auto line = read_line(path);
  if (!line || line->empty()) return std::nullopt;
  size_t used = 0;
  try {
    const uint64_t value = std::stoull(*line, &used);
    if (used == line->size()) return value;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

}  // namespace

DeviceProfile load_device_profile(const std::string& name_or_path, const std::string& dir) {
  TURBINE_CHECK(!name_or_path.empty(), "device profile: empty name ({})", available_profiles(dir));
  std::string file = name_or_path;
  if (!is_yaml_path(name_or_path)) {
    file = (fs::path(dir) / (name_or_path + ".yaml")).string();
    TURBINE_CHECK(fs::is_regular_file(file), "no device profile '{}' in {} ({})", name_or_path, dir,
                  available_profiles(dir));
  }
  TURBINE_CHECK(fs::is_regular_file(file), "device profile {}: no such file", file);
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::Exception& e) {
    TURBINE_FAIL("device profile {}: {}", file, e.what());
  }
  TURBINE_CHECK(root.IsMap(), "device profile {}: expected a mapping of keys to values", file);

  DeviceProfile profile;
  const std::map<std::string, std::string*> texts = {
      {"name", &profile.name}, {"description", &profile.description}, {"source", &profile.source}};
  const std::map<std::string, double*> numbers = {
      {"busy_w", &profile.busy_w},
      {"idle_w", &profile.idle_w},
      {"dram_static_w_per_gib", &profile.dram_static_w_per_gib},
      {"dram_nj_per_byte", &profile.dram_nj_per_byte},
      {"storage_read_nj_per_byte", &profile.storage_read_nj_per_byte},
      {"storage_write_nj_per_byte", &profile.storage_write_nj_per_byte}};
  std::vector<std::string> seen;
  for (const auto& item : root) {
    const std::string key = item.first.as<std::string>();
    TURBINE_CHECK(std::find(seen.begin(), seen.end(), key) == seen.end(),
                  "device profile {}: {} is given twice", file, key);
    if (const auto text = texts.find(key); text != texts.end()) {
      *text->second = text_of(item.second, file, key);
    } else if (const auto number = numbers.find(key); number != numbers.end()) {
      *number->second = number_of(item.second, file, key);
    } else {
      TURBINE_FAIL("device profile {}: unknown key '{}'", file, key);
    }
    seen.push_back(key);
  }
  std::vector<std::string> missing;
  const auto note_missing = [&](const std::string& key) {
    if (std::find(seen.begin(), seen.end(), key) == seen.end()) missing.push_back(key);
  };
  for (const auto& [key, _] : texts) note_missing(key);
  for (const auto& [key, _] : numbers) note_missing(key);
  TURBINE_CHECK(missing.empty(), "device profile {}: missing key{} {}", file,
                missing.size() > 1 ? "s" : "", fmt::join(missing, ", "));
  return profile;
}

EnergyUsage& EnergyUsage::operator+=(const EnergyUsage& other) {
  busy_s += other.busy_s;
  wall_s += other.wall_s;
  resident_gib_s += other.resident_gib_s;
  dram_bytes += other.dram_bytes;
  storage_read_bytes += other.storage_read_bytes;
  storage_write_bytes += other.storage_write_bytes;
  return *this;
}

nlohmann::ordered_json EnergyBreakdown::to_json() const {
  nlohmann::ordered_json out;
  out["compute_j"] = compute_j;
  out["idle_j"] = idle_j;
  out["dram_static_j"] = dram_static_j;
  out["dram_j"] = dram_j;
  out["storage_j"] = storage_j;
  out["total_j"] = total_j;
  return out;
}

EnergyBreakdown model_energy(const DeviceProfile& profile, const EnergyUsage& usage) {
  const std::pair<const char*, double> fields[] = {
      {"busy_s", usage.busy_s},
      {"wall_s", usage.wall_s},
      {"resident_gib_s", usage.resident_gib_s},
      {"dram_bytes", usage.dram_bytes},
      {"storage_read_bytes", usage.storage_read_bytes},
      {"storage_write_bytes", usage.storage_write_bytes}};
  for (const auto& [name, value] : fields)
    TURBINE_CHECK(std::isfinite(value) && value >= 0,
                  "energy usage: {} is {}; it must be a finite number >= 0", name, value);
  EnergyBreakdown out;
  out.compute_j = profile.busy_w * usage.busy_s;
  out.idle_j = profile.idle_w * std::max(0.0, usage.wall_s - usage.busy_s);
  out.dram_static_j = profile.dram_static_w_per_gib * usage.resident_gib_s;
  out.dram_j = profile.dram_nj_per_byte * usage.dram_bytes * kJoulesPerNanojoule;
  out.storage_j = (profile.storage_read_nj_per_byte * usage.storage_read_bytes +
                   profile.storage_write_nj_per_byte * usage.storage_write_bytes) *
                  kJoulesPerNanojoule;
  out.total_j = out.compute_j + out.idle_j + out.dram_static_j + out.dram_j + out.storage_j;
  return out;
}

std::optional<RaplMeter> RaplMeter::open(const std::string& root) {
  static const std::regex kTopLevelZone("(intel|amd)-rapl:[0-9]+");
  std::error_code error;
  if (!fs::is_directory(root, error)) return std::nullopt;
  std::vector<Zone> zones;
  for (const auto& entry : fs::directory_iterator(root, error)) {
    const std::string dir_name = entry.path().filename().string();
    if (!std::regex_match(dir_name, kTopLevelZone)) continue;
    const auto name = read_line(entry.path() / "name");
    if (name && name->rfind("package", 0) != 0) continue;  // psys holds the packages
    const auto energy = read_counter(entry.path() / "energy_uj");
    const auto range = read_counter(entry.path() / "max_energy_range_uj");
    if (!energy || !range || *range == 0 || *energy > *range) continue;
    Zone zone;
    zone.dir = entry.path().string();
    zone.label = name ? fmt::format("{} ({})", dir_name, *name) : dir_name;
    zone.max_uj = *range;
    zone.last_uj = *energy;
    zones.push_back(std::move(zone));
  }
  if (zones.empty()) return std::nullopt;
  std::sort(zones.begin(), zones.end(),
            [](const Zone& a, const Zone& b) { return a.label < b.label; });
  return RaplMeter(std::move(zones));
}

double RaplMeter::joules() {
  for (Zone& zone : zones_) {
    const fs::path file = fs::path(zone.dir) / "energy_uj";
    const auto now = read_counter(file);
    TURBINE_CHECK(now.has_value(), "RAPL: cannot read {} any more", file.string());
    TURBINE_CHECK(*now <= zone.max_uj, "RAPL: {} reads {}, above its max_energy_range_uj {}",
                  file.string(), *now, zone.max_uj);
    // The counter runs from 0 to max_energy_range_uj and starts again at 0.
    const uint64_t delta =
        *now >= zone.last_uj ? *now - zone.last_uj : zone.max_uj - zone.last_uj + *now;
    total_uj_ += double(delta);
    zone.last_uj = *now;
  }
  return total_uj_ * kJoulesPerMicrojoule;
}

std::vector<std::string> RaplMeter::zones() const {
  std::vector<std::string> out;
  for (const Zone& zone : zones_) out.push_back(zone.label);
  return out;
}

std::optional<NvmlMeter> NvmlMeter::open(int index) {
  // The library stays loaded for the process: NVML has no per-meter state.
  static void* const library = ::dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!library) return std::nullopt;
  using InitFn = int (*)();
  using HandleFn = int (*)(unsigned, void**);
  using NameFn = int (*)(void*, char*, unsigned);
  const auto init = reinterpret_cast<InitFn>(::dlsym(library, "nvmlInit_v2"));
  const auto handle = reinterpret_cast<HandleFn>(::dlsym(library, "nvmlDeviceGetHandleByIndex_v2"));
  const auto name = reinterpret_cast<NameFn>(::dlsym(library, "nvmlDeviceGetName"));
  const auto energy =
      reinterpret_cast<EnergyFn>(::dlsym(library, "nvmlDeviceGetTotalEnergyConsumption"));
  if (!init || !handle || !name || !energy || init() != 0) return std::nullopt;  // 0: NVML_SUCCESS
  // CUDA numbers the devices CUDA_VISIBLE_DEVICES lists, NVML all of them:
  // CUDA's device `index` is the list's entry `index` (an NVML index or a UUID).
  using UuidFn = int (*)(const char*, void**);
  const auto by_uuid = reinterpret_cast<UuidFn>(::dlsym(library, "nvmlDeviceGetHandleByUUID"));
  std::string entry = std::to_string(index);
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES"); visible && *visible) {
    std::vector<std::string> listed;
    std::stringstream list(visible);
    for (std::string item; std::getline(list, item, ',');) listed.push_back(item);
    if (index < 0 || size_t(index) >= listed.size()) return std::nullopt;
    entry = listed[size_t(index)];
  }
  void* device = nullptr;
  const bool numeric = !entry.empty() && std::all_of(entry.begin(), entry.end(), ::isdigit);
  if (numeric) {
    if (handle(unsigned(std::stoul(entry)), &device) != 0) return std::nullopt;
  } else if (!by_uuid || by_uuid(entry.c_str(), &device) != 0) {
    return std::nullopt;
  }
  unsigned long long start = 0;
  if (energy(device, &start) != 0) return std::nullopt;  // no counter (before Volta)
  char text[96] = {};
  const std::string label = name(device, text, sizeof text) == 0 ? text : "GPU";
  return NvmlMeter(device, energy, fmt::format("{} (GPU {})", label, index), start);
}

double NvmlMeter::joules() {
  unsigned long long now = 0;
  TURBINE_CHECK(energy_(device_, &now) == 0, "NVML: the energy counter of {} no longer reads",
                name_);
  return double(now - start_mj_) / 1000.0;
}

}  // namespace turbine::cl
