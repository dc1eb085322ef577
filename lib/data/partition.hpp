// How a federated simulation splits a labelled data set among clients
// (fedsim, issue 17), as Flower's partitioners do:
//   iid        a seeded shuffle cut into near-equal parts
//   dirichlet  per class, proportions over the clients drawn from
//              Dirichlet(alpha) (Hsu et al. 2019; Flower's
//              DirichletPartitioner): small alpha, few classes per client;
//              drawn again (up to max_attempts) while a client has fewer
//              than min_partition_size samples
//   shards     McMahan et al.'s pathological split: samples sorted by label
//              cut into clients x shards_per_client shards, each client
//              given shards_per_client of them at random (Flower's
//              ShardPartitioner)
// Deterministic by seed on every machine (the counter-based Philox
// generator; gamma variates by Marsaglia and Tsang).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace turbine::data {

struct PartitionConfig {
  std::string kind = "iid";  // iid | dirichlet | shards
  int64_t clients = 10;
  double alpha = 0.5;               // dirichlet: concentration (> 0)
  int64_t min_partition_size = 10;  // dirichlet: each client at least this many samples
  int64_t max_attempts = 10;        // dirichlet: draws before giving up
  int64_t shards_per_client = 2;    // shards
  uint64_t seed = 1234;
};

// Each client's sample indices (ascending), clients in order; every sample
// goes to exactly one client. labels in [0, num_classes).
std::vector<std::vector<int64_t>> partition(std::span<const int32_t> labels, int64_t num_classes,
                                            const PartitionConfig& config);

// Per client, the count of each class in its part (for reports and tests).
std::vector<std::vector<int64_t>> class_counts(const std::vector<std::vector<int64_t>>& parts,
                                               std::span<const int32_t> labels,
                                               int64_t num_classes);

}  // namespace turbine::data
