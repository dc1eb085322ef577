// cl-edge's energy (lib/cl/energy.hpp): the model against a hand-computed
// breakdown, idle never negative, usages that add up; every shipped profile
// of configs/devices loads, by name and by path, with a source; a bad
// profile is refused naming the file and the problem (unknown name with the
// profiles available, missing key, negative value, unknown key); the RAPL
// meter sums the package zones of a fake powercap tree across a wraparound,
// skips subzones and psys, and is absent on an empty tree.
#define BOOST_TEST_MODULE cl_energy
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "cl/energy.hpp"
#include "test_util.hpp"

using namespace turbine;
using namespace turbine::testing;
namespace fs = std::filesystem;

namespace {

std::string devices_dir() {
  const char* root = std::getenv("TURBINE_SOURCE_ROOT");
  return std::string(root ? root : ".") + "/configs/devices";
}

cl::DeviceProfile test_profile() {
  cl::DeviceProfile p;
  p.name = "test";
  p.busy_w = 10;
  p.idle_w = 2;
  p.dram_static_w_per_gib = 0.5;
  p.dram_nj_per_byte = 0.04;
  p.storage_read_nj_per_byte = 3;
  p.storage_write_nj_per_byte = 6;
  return p;
}

cl::EnergyUsage test_usage() {
  cl::EnergyUsage u;
  u.busy_s = 100;
  u.wall_s = 130;
  u.resident_gib_s = 40;
  u.dram_bytes = 5e9;
  u.storage_read_bytes = 1e9;
  u.storage_write_bytes = 2e8;
  return u;
}

void write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path);
  out << text;
}

const char* kProfileKeys[] = {"name",
                              "description",
                              "source",
                              "busy_w",
                              "idle_w",
                              "dram_static_w_per_gib",
                              "dram_nj_per_byte",
                              "storage_read_nj_per_byte",
                              "storage_write_nj_per_byte"};

// A valid profile's YAML, with `key` left out or set to `value`.
std::string profile_yaml(const std::string& key = "", const std::string& value = "",
                         bool drop = false) {
  std::string out;
  for (const std::string k : kProfileKeys) {
    const bool text = k == "name" || k == "description" || k == "source";
    std::string v = text ? "x" : "1.5";
    if (k == key) {
      if (drop) continue;
      v = value;
    }
    out += k + ": " + v + "\n";
  }
  return out;
}

// A powercap zone folder with `name`, `energy_uj` and `max_energy_range_uj`.
void write_zone(const fs::path& dir, const std::string& name, uint64_t energy_uj, uint64_t max_uj) {
  write_file(dir / "name", name + "\n");
  write_file(dir / "energy_uj", std::to_string(energy_uj) + "\n");
  write_file(dir / "max_energy_range_uj", std::to_string(max_uj) + "\n");
}

}  // namespace

BOOST_AUTO_TEST_CASE(model_matches_hand_computation) {
  const cl::EnergyBreakdown e = cl::model_energy(test_profile(), test_usage());
  BOOST_TEST(e.compute_j == 1000.0, boost::test_tools::tolerance(1e-12));    // 10 W x 100 s
  BOOST_TEST(e.idle_j == 60.0, boost::test_tools::tolerance(1e-12));         // 2 W x 30 s
  BOOST_TEST(e.dram_static_j == 20.0, boost::test_tools::tolerance(1e-12));  // 0.5 x 40
  BOOST_TEST(e.dram_j == 0.2, boost::test_tools::tolerance(1e-12));          // 0.04 nJ x 5e9
  BOOST_TEST(e.storage_j == 4.2, boost::test_tools::tolerance(1e-12));       // 3 + 1.2
  BOOST_TEST(e.total_j == 1084.4, boost::test_tools::tolerance(1e-12));
  const auto json = e.to_json();
  BOOST_TEST(json.size() == 6u);
  BOOST_TEST(json.begin().key() == "compute_j");
  BOOST_TEST(json["total_j"].get<double>() == e.total_j);
}

BOOST_AUTO_TEST_CASE(idle_is_never_negative) {
  cl::EnergyUsage u = test_usage();
  u.wall_s = 50;  // less than busy: a usage summed over overlapping threads
  const cl::EnergyBreakdown e = cl::model_energy(test_profile(), u);
  BOOST_TEST(e.idle_j == 0.0);
  BOOST_TEST(e.total_j == e.compute_j + e.dram_static_j + e.dram_j + e.storage_j);
}

BOOST_AUTO_TEST_CASE(usages_add_up) {
  cl::EnergyUsage total = test_usage();
  total += test_usage();
  BOOST_TEST(total.busy_s == 200.0);
  BOOST_TEST(total.wall_s == 260.0);
  BOOST_TEST(total.resident_gib_s == 80.0);
  BOOST_TEST(total.dram_bytes == 1e10);
  BOOST_TEST(total.storage_read_bytes == 2e9);
  BOOST_TEST(total.storage_write_bytes == 4e8);
  BOOST_TEST(cl::model_energy(test_profile(), total).total_j ==
                 2 * cl::model_energy(test_profile(), test_usage()).total_j,
             boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(model_refuses_negative_usage) {
  cl::EnergyUsage u = test_usage();
  u.storage_write_bytes = -1;
  const std::string error = error_of([&] { cl::model_energy(test_profile(), u); });
  BOOST_TEST(contains(error, "storage_write_bytes is -1"), error);
}

BOOST_AUTO_TEST_CASE(shipped_profiles_load) {
  for (const std::string name : {"jetson-xavier-nx", "jetson-tx2", "generic-x86-server"}) {
    BOOST_TEST_CONTEXT(name) {
      const cl::DeviceProfile p = cl::load_device_profile(name, devices_dir());
      BOOST_TEST(p.name == name);
      BOOST_TEST(!p.description.empty());
      BOOST_TEST(!p.source.empty());
      BOOST_TEST(p.busy_w > p.idle_w);
      BOOST_TEST(p.idle_w > 0);
      BOOST_TEST(p.dram_static_w_per_gib > 0);
      BOOST_TEST(p.dram_nj_per_byte > 0);
      BOOST_TEST(p.dram_nj_per_byte < p.storage_read_nj_per_byte);  // DRAM is the cheap tier
      BOOST_TEST(p.storage_read_nj_per_byte > 0);
      BOOST_TEST(p.storage_write_nj_per_byte >= p.storage_read_nj_per_byte);
      // The same file by its path.
      const cl::DeviceProfile by_path =
          cl::load_device_profile(devices_dir() + "/" + name + ".yaml", "unused");
      BOOST_TEST(by_path.busy_w == p.busy_w);
      BOOST_TEST(by_path.storage_write_nj_per_byte == p.storage_write_nj_per_byte);
    }
  }
  const cl::DeviceProfile nx = cl::load_device_profile("jetson-xavier-nx", devices_dir());
  BOOST_TEST(nx.busy_w == 15.0);
  BOOST_TEST(contains(nx.source, "data sheet"));
  const cl::DeviceProfile server = cl::load_device_profile("generic-x86-server", devices_dir());
  BOOST_TEST(contains(server.description, "ESTIMATE"));
  BOOST_TEST(contains(server.source, "estimate"));
}

BOOST_AUTO_TEST_CASE(unknown_profile_lists_those_available) {
  const std::string error = error_of([] { cl::load_device_profile("jetson-nano", devices_dir()); });
  BOOST_TEST(contains(error, "no device profile 'jetson-nano'"), error);
  BOOST_TEST(contains(error, "generic-x86-server, jetson-tx2, jetson-xavier-nx"), error);

  TempDir tmp("cl_energy_empty");
  const std::string none = error_of([&] { cl::load_device_profile("x", tmp.path.string()); });
  BOOST_TEST(contains(none, "has none"), none);
  const std::string missing_file =
      error_of([&] { cl::load_device_profile(tmp.file("absent.yaml"), "unused"); });
  BOOST_TEST(contains(missing_file, tmp.file("absent.yaml") + ": no such file"), missing_file);
}

BOOST_AUTO_TEST_CASE(bad_profiles_are_refused_naming_file_and_key) {
  TempDir tmp("cl_energy_bad");
  write_file(tmp.path / "good.yaml", profile_yaml());
  BOOST_TEST(cl::load_device_profile("good", tmp.path.string()).dram_nj_per_byte == 1.5);

  write_file(tmp.path / "missing.yaml", profile_yaml("idle_w", "", true));
  const std::string missing =
      error_of([&] { cl::load_device_profile("missing", tmp.path.string()); });
  BOOST_TEST(contains(missing, tmp.file("missing.yaml")), missing);
  BOOST_TEST(contains(missing, "missing key idle_w"), missing);

  write_file(tmp.path / "negative.yaml", profile_yaml("dram_nj_per_byte", "-0.5"));
  const std::string negative =
      error_of([&] { cl::load_device_profile(tmp.file("negative.yaml"), "unused"); });
  BOOST_TEST(contains(negative, tmp.file("negative.yaml")), negative);
  BOOST_TEST(contains(negative, "dram_nj_per_byte is -0.5"), negative);

  write_file(tmp.path / "text.yaml", profile_yaml("busy_w", "fast"));
  const std::string text = error_of([&] { cl::load_device_profile("text", tmp.path.string()); });
  BOOST_TEST(contains(text, "busy_w must be a number"), text);

  write_file(tmp.path / "unknown.yaml", profile_yaml() + "gpu_w: 3\n");
  const std::string unknown =
      error_of([&] { cl::load_device_profile("unknown", tmp.path.string()); });
  BOOST_TEST(contains(unknown, "unknown key 'gpu_w'"), unknown);

  write_file(tmp.path / "list.yaml", "- 1\n- 2\n");
  const std::string list = error_of([&] { cl::load_device_profile("list", tmp.path.string()); });
  BOOST_TEST(contains(list, "expected a mapping"), list);

  write_file(tmp.path / "broken.yaml", "busy_w: [1,\n");
  const std::string broken =
      error_of([&] { cl::load_device_profile("broken", tmp.path.string()); });
  BOOST_TEST(contains(broken, tmp.file("broken.yaml")), broken);
}

BOOST_AUTO_TEST_CASE(rapl_sums_packages_across_a_wraparound) {
  TempDir tmp("cl_energy_rapl");
  const fs::path root = tmp.path;
  write_zone(root / "intel-rapl:0", "package-0", 1'000'000, 10'000'000);
  write_zone(root / "intel-rapl:1", "package-1", 9'500'000, 10'000'000);
  // Not summed: a subzone (inside its package), psys (contains the
  // packages), the control type folder.
  write_zone(root / "intel-rapl:0:0", "core", 5'000'000, 10'000'000);
  write_zone(root / "intel-rapl:2", "psys", 5'000'000, 10'000'000);
  fs::create_directories(root / "intel-rapl");

  auto meter = cl::RaplMeter::open(root.string());
  BOOST_TEST_REQUIRE(meter.has_value());
  const std::vector<std::string> zones = meter->zones();
  BOOST_TEST(zones.size() == 2u);
  BOOST_TEST(zones[0] == "intel-rapl:0 (package-0)");
  BOOST_TEST(zones[1] == "intel-rapl:1 (package-1)");
  BOOST_TEST(meter->joules() == 0.0);

  // Package 0 gains 2 J; package 1 gains 0.5 J up to its range, wraps, and 1 J more.
  write_zone(root / "intel-rapl:0", "package-0", 3'000'000, 10'000'000);
  write_zone(root / "intel-rapl:1", "package-1", 1'000'000, 10'000'000);
  write_zone(root / "intel-rapl:0:0", "core", 9'000'000, 10'000'000);
  BOOST_TEST(meter->joules() == 3.5, boost::test_tools::tolerance(1e-12));
  write_zone(root / "intel-rapl:0", "package-0", 3'250'000, 10'000'000);
  BOOST_TEST(meter->joules() == 3.75, boost::test_tools::tolerance(1e-12));

  fs::remove(root / "intel-rapl:1" / "energy_uj");
  const std::string gone = error_of([&] { meter->joules(); });
  BOOST_TEST(contains(gone, "intel-rapl:1/energy_uj"), gone);
}

BOOST_AUTO_TEST_CASE(rapl_reads_amd_style_zones) {
  TempDir tmp("cl_energy_amd");
  write_zone(tmp.path / "amd-rapl:0", "package-0", 100, 1'000'000);
  auto meter = cl::RaplMeter::open(tmp.path.string());
  BOOST_TEST_REQUIRE(meter.has_value());
  BOOST_TEST(meter->zones() == std::vector<std::string>{"amd-rapl:0 (package-0)"});
}

BOOST_AUTO_TEST_CASE(rapl_is_absent_without_readable_zones) {
  TempDir tmp("cl_energy_none");
  BOOST_TEST(!cl::RaplMeter::open(tmp.path.string()).has_value());
  BOOST_TEST(!cl::RaplMeter::open(tmp.file("absent")).has_value());
  // A zone whose counter cannot be read (root-only since Linux 5.10).
  fs::create_directories(tmp.path / "intel-rapl:0");
  write_file(tmp.path / "intel-rapl:0" / "name", "package-0\n");
  write_file(tmp.path / "intel-rapl:0" / "max_energy_range_uj", "1000\n");
  BOOST_TEST(!cl::RaplMeter::open(tmp.path.string()).has_value());
}

BOOST_AUTO_TEST_CASE(nvml_reads_a_gpu_or_says_it_cannot) {
  // Where the driver's NVML and a GPU with an energy counter are present the
  // meter counts up from 0; elsewhere (this suite's usual machine) open()
  // returns nothing, and a GPU index CUDA_VISIBLE_DEVICES does not list never opens.
  auto meter = cl::NvmlMeter::open(0);
  if (meter) {
    BOOST_TEST_MESSAGE("NVML: " << meter->name());
    BOOST_TEST(meter->joules() >= 0.0);
  } else {
    BOOST_TEST_MESSAGE("NVML: no GPU energy counter here");
  }
  const char* saved = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string before = saved ? saved : "";
  ::setenv("CUDA_VISIBLE_DEVICES", "0", 1);
  BOOST_TEST(!cl::NvmlMeter::open(1).has_value());
  BOOST_TEST(!cl::NvmlMeter::open(-1).has_value());
  if (saved)
    ::setenv("CUDA_VISIBLE_DEVICES", before.c_str(), 1);
  else
    ::unsetenv("CUDA_VISIBLE_DEVICES");
}
