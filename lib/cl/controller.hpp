// Miro's choice of a memory configuration (Ma et al., MobiCom 2023, issue
// 18): cl-edge profiles candidate configurations of its hierarchical memory
// (the replay buffer's rb_size in RAM, the storage tier's st_size, the
// fraction swapped per period) for accuracy and energy, and keeps the one
// that buys the most accuracy per joule among the most accurate. Profiling
// is done elsewhere; this is the candidates and the decision.
//
// The cutline is what keeps the choice from trading too much accuracy for
// energy: the configuration with the best accuracy per joule overall is
// often a tiny memory that forgets, so only the `cutline` most accurate
// candidates may be chosen.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

namespace turbine::cl {

struct MemoryConfiguration {
  int64_t rb_size = 0;    // samples in RAM, >= 1
  int64_t st_size = 0;    // samples on storage, >= 0; 0: no storage tier
  double swap_ratio = 0;  // of the RAM slots replaced per swap, in [0, 1]
  bool operator==(const MemoryConfiguration&) const = default;
  // "rb_size 500, st_size 5000, swap_ratio 0.1"
  std::string describe() const;
};

// The grid of every combination, rb_sizes outermost, then st_sizes, then
// swap_ratios, in the lists' order. With 0 < sample < the grid's size,
// `sample` of them drawn without replacement (Floyd's algorithm on Philox
// draws of `seed`), kept in grid order: the same seed gives the same subset.
// Throws turbine::Error for an empty or duplicated list, rb_size < 1,
// st_size < 0, a swap_ratio outside [0, 1], sample < 0.
std::vector<MemoryConfiguration> candidate_configurations(std::span<const int64_t> rb_sizes,
                                                          std::span<const int64_t> st_sizes,
                                                          std::span<const double> swap_ratios,
                                                          int64_t sample, uint64_t seed);

// A candidate as profiled: its accuracy and what it cost.
struct ProfiledConfiguration {
  MemoryConfiguration config;
  double accuracy = 0;  // higher is better
  double energy_j = 0;  // > 0
  double seconds = 0;
};

struct ConfigurationChoice {
  size_t chosen = 0;         // index into the table
  std::vector<size_t> kept;  // the cutline's candidates, most accurate first
  // {"chosen": {index, config, accuracy, energy_j, seconds, accuracy_per_j},
  //  "kept": [the same for each kept candidate]}; throws turbine::Error if
  // `table` is not the one chosen from (an index beyond it).
  nlohmann::ordered_json to_json(std::span<const ProfiledConfiguration> table) const;
};

// Miro's rule: keep the `cutline` most accurate candidates (ties: less
// energy first, then the lower index), and choose among them the highest
// accuracy per joule (ties: the lower index). A cutline above the table's
// size keeps all of it. Throws turbine::Error for an empty table, cutline <
// 1, a non-finite accuracy or seconds, an energy that is not > 0.
ConfigurationChoice choose_configuration(std::span<const ProfiledConfiguration> table,
                                         int64_t cutline);

}  // namespace turbine::cl
