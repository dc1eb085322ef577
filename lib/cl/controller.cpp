// The candidates and Miro's choice of controller.hpp.
#include "cl/controller.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace turbine::cl {

namespace {

constexpr uint64_t kSampleStream = 0xc0f16;  // the draws of candidate_configurations()

template <typename T>
void check_list(std::span<const T> values, const char* name) {
  TURBINE_CHECK(!values.empty(), "memory configurations: {} is empty; give at least one", name);
  for (size_t i = 0; i < values.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      TURBINE_CHECK(values[i] != values[j], "memory configurations: {} lists {} twice", name,
                    values[i]);
}

MemoryConfiguration grid_entry(std::span<const int64_t> rb_sizes, std::span<const int64_t> st_sizes,
                               std::span<const double> swap_ratios, uint64_t index) {
  MemoryConfiguration c;
  c.swap_ratio = swap_ratios[index % swap_ratios.size()];
  index /= swap_ratios.size();
  c.st_size = st_sizes[index % st_sizes.size()];
  c.rb_size = rb_sizes[index / st_sizes.size()];
  return c;
}

nlohmann::ordered_json row_json(std::span<const ProfiledConfiguration> table, size_t index) {
  TURBINE_CHECK(index < table.size(),
                "configuration choice: index {} is beyond the table of {} configurations "
                "(not the table it was chosen from?)",
                index, table.size());
  const ProfiledConfiguration& row = table[index];
  nlohmann::ordered_json out;
  out["index"] = index;
  out["rb_size"] = row.config.rb_size;
  out["st_size"] = row.config.st_size;
  out["swap_ratio"] = row.config.swap_ratio;
  out["accuracy"] = row.accuracy;
  out["energy_j"] = row.energy_j;
  out["seconds"] = row.seconds;
  out["accuracy_per_j"] = row.accuracy / row.energy_j;
  return out;
}

}  // namespace

std::string MemoryConfiguration::describe() const {
  return fmt::format("rb_size {}, st_size {}, swap_ratio {}", rb_size, st_size, swap_ratio);
}

std::vector<MemoryConfiguration> candidate_configurations(std::span<const int64_t> rb_sizes,
                                                          std::span<const int64_t> st_sizes,
                                                          std::span<const double> swap_ratios,
                                                          int64_t sample, uint64_t seed) {
  check_list(rb_sizes, "rb_sizes");
  check_list(st_sizes, "st_sizes");
  check_list(swap_ratios, "swap_ratios");
  for (const int64_t rb : rb_sizes)
    TURBINE_CHECK(rb >= 1, "memory configurations: rb_size {} must be >= 1", rb);
  for (const int64_t st : st_sizes)
    TURBINE_CHECK(st >= 0, "memory configurations: st_size {} must be >= 0 (0: no storage tier)",
                  st);
  for (const double ratio : swap_ratios)
    TURBINE_CHECK(ratio >= 0 && ratio <= 1,  // false for NaN too
                  "memory configurations: swap_ratio {} must be in [0, 1]", ratio);
  TURBINE_CHECK(sample >= 0, "memory configurations: sample {} must be >= 0 (0: the whole grid)",
                sample);

  const uint64_t per_rb = uint64_t(st_sizes.size()) * swap_ratios.size();
  const uint64_t grid = uint64_t(rb_sizes.size()) * per_rb;
  TURBINE_CHECK(grid / per_rb == rb_sizes.size(),
                "memory configurations: a grid of {} x {} x {} is too large", rb_sizes.size(),
                st_sizes.size(), swap_ratios.size());
  std::vector<MemoryConfiguration> out;
  if (sample == 0 || uint64_t(sample) >= grid) {
    out.reserve(static_cast<size_t>(grid));
    for (uint64_t i = 0; i < grid; ++i)
      out.push_back(grid_entry(rb_sizes, st_sizes, swap_ratios, i));
    return out;
  }
  // Floyd's algorithm: a uniform `sample`-subset of [0, grid) in `sample`
  // draws, whatever the grid's size.
  std::set<uint64_t> chosen;
  for (uint64_t j = grid - uint64_t(sample); j < grid; ++j) {
    const uint64_t t = philox_below(seed, kSampleStream, j, j + 1);
    chosen.insert(chosen.count(t) ? j : t);
  }
  out.reserve(chosen.size());
  for (const uint64_t i : chosen) out.push_back(grid_entry(rb_sizes, st_sizes, swap_ratios, i));
  return out;
}

nlohmann::ordered_json ConfigurationChoice::to_json(
    std::span<const ProfiledConfiguration> table) const {
  nlohmann::ordered_json out;
  out["chosen"] = row_json(table, chosen);
  out["kept"] = nlohmann::ordered_json::array();
  for (const size_t index : kept) out["kept"].push_back(row_json(table, index));
  return out;
}

ConfigurationChoice choose_configuration(std::span<const ProfiledConfiguration> table,
                                         int64_t cutline) {
  TURBINE_CHECK(!table.empty(), "configuration choice: no profiled configurations");
  TURBINE_CHECK(cutline >= 1, "configuration choice: cutline {} must be >= 1", cutline);
  for (size_t i = 0; i < table.size(); ++i) {
    const ProfiledConfiguration& row = table[i];
    TURBINE_CHECK(std::isfinite(row.accuracy), "configuration choice: row {} ({}) has accuracy {}",
                  i, row.config.describe(), row.accuracy);
    TURBINE_CHECK(std::isfinite(row.energy_j) && row.energy_j > 0,
                  "configuration choice: row {} ({}) has energy {} J; it must be > 0", i,
                  row.config.describe(), row.energy_j);
    TURBINE_CHECK(std::isfinite(row.seconds), "configuration choice: row {} ({}) has seconds {}", i,
                  row.config.describe(), row.seconds);
  }

  ConfigurationChoice choice;
  choice.kept.resize(table.size());
  std::iota(choice.kept.begin(), choice.kept.end(), size_t(0));
  std::sort(choice.kept.begin(), choice.kept.end(), [&](size_t a, size_t b) {
    if (table[a].accuracy != table[b].accuracy) return table[a].accuracy > table[b].accuracy;
    if (table[a].energy_j != table[b].energy_j) return table[a].energy_j < table[b].energy_j;
    return a < b;
  });
  choice.kept.resize(std::min(choice.kept.size(), static_cast<size_t>(cutline)));

  // The lowest index wins a tie: scan the kept in index order.
  std::vector<size_t> by_index = choice.kept;
  std::sort(by_index.begin(), by_index.end());
  choice.chosen = by_index.front();
  for (const size_t i : by_index)
    if (table[i].accuracy / table[i].energy_j >
        table[choice.chosen].accuracy / table[choice.chosen].energy_j)
      choice.chosen = i;
  return choice;
}

}  // namespace turbine::cl
