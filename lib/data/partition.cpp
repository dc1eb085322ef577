// The partitioners of partition.hpp.
#include "data/partition.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace turbine::data {

namespace {

// Uniform in (0, 1) with 53 random bits, draw i of (seed, stream).
double uniform(uint64_t seed, uint64_t stream, uint64_t i) {
  const auto r = philox4x32(seed, stream, i);
  const uint64_t bits = ((uint64_t(r[0]) << 32) | r[1]) >> 11;
  return (double(bits) + 0.5) / 9007199254740992.0;  // 2^53
}

// A counter-based stream of draws.
struct Draws {
  uint64_t seed, stream, next = 0;
  double uniform() { return data::uniform(seed, stream, next++); }
  double normal() {  // Box-Muller
    const double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Gamma(shape, 1) by Marsaglia and Tsang; shape < 1 through the boost
  // Gamma(shape + 1) * U^(1 / shape).
  double gamma(double shape) {
    if (shape < 1.0) return gamma(shape + 1.0) * std::pow(uniform(), 1.0 / shape);
    const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      double x, v;
      do {
        x = normal();
        v = 1.0 + c * x;
      } while (v <= 0.0);
      v = v * v * v;
      const double u = uniform();
      if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
      if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
    }
  }
  // Fisher-Yates.
  void shuffle(std::vector<int64_t>& v) {
    for (size_t i = v.size(); i > 1; --i) {
      const size_t j = size_t(uniform() * double(i));
      std::swap(v[i - 1], v[std::min(j, i - 1)]);
    }
  }
};

std::vector<std::vector<int64_t>> iid(int64_t n, const PartitionConfig& c) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  Draws draws{c.seed, 0x11d};
  draws.shuffle(order);
  std::vector<std::vector<int64_t>> parts(static_cast<size_t>(c.clients));
  for (int64_t k = 0; k < c.clients; ++k) {
    const int64_t begin = n * k / c.clients, end = n * (k + 1) / c.clients;
    parts[size_t(k)].assign(order.begin() + begin, order.begin() + end);
  }
  return parts;
}

std::vector<std::vector<int64_t>> dirichlet(std::span<const int32_t> labels, int64_t num_classes,
                                            const PartitionConfig& c) {
  std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(num_classes));
  for (size_t i = 0; i < labels.size(); ++i) by_class[size_t(labels[i])].push_back(int64_t(i));
  int64_t smallest = 0;
  for (int64_t attempt = 0; attempt < c.max_attempts; ++attempt) {
    Draws draws{c.seed, 0xd1c0 + uint64_t(attempt)};
    std::vector<std::vector<int64_t>> parts(static_cast<size_t>(c.clients));
    for (int64_t k = 0; k < num_classes; ++k) {
      std::vector<int64_t> members = by_class[size_t(k)];
      draws.shuffle(members);
      std::vector<double> p(static_cast<size_t>(c.clients));
      double total = 0;
      for (double& v : p) total += (v = draws.gamma(c.alpha));
      // Cut points at the cumulative proportions.
      double cumulative = 0;
      size_t begin = 0;
      for (int64_t client = 0; client < c.clients; ++client) {
        cumulative += p[size_t(client)] / total;
        const size_t end =
            client + 1 == c.clients
                ? members.size()
                : std::min(members.size(),
                           size_t(std::llround(cumulative * double(members.size()))));
        auto& part = parts[size_t(client)];
        part.insert(part.end(), members.begin() + std::ptrdiff_t(begin),
                    members.begin() + std::ptrdiff_t(std::max(begin, end)));
        begin = std::max(begin, end);
      }
    }
    smallest = int64_t(std::min_element(parts.begin(), parts.end(), [](auto& a, auto& b) {
                         return a.size() < b.size();
                       })->size());
    if (smallest >= c.min_partition_size) return parts;
  }
  TURBINE_FAIL(
      "partition dirichlet: after {} draws a client still has only {} samples (fewer than "
      "min_partition_size {}) with alpha {} over {} clients and {} samples: raise alpha, lower "
      "the client count or min_partition_size",
      c.max_attempts, smallest, c.min_partition_size, c.alpha, c.clients, labels.size());
}

std::vector<std::vector<int64_t>> shards(std::span<const int32_t> labels,
                                         const PartitionConfig& c) {
  const int64_t n = int64_t(labels.size()), count = c.clients * c.shards_per_client;
  TURBINE_CHECK(count <= n,
                "partition shards: {} clients x {} shards need at least {} samples, the data set "
                "has {}",
                c.clients, c.shards_per_client, count, n);
  std::vector<int64_t> sorted(static_cast<size_t>(n));
  std::iota(sorted.begin(), sorted.end(), 0);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [&](int64_t a, int64_t b) { return labels[size_t(a)] < labels[size_t(b)]; });
  std::vector<int64_t> shard_ids(static_cast<size_t>(count));
  std::iota(shard_ids.begin(), shard_ids.end(), 0);
  Draws draws{c.seed, 0x5a4d};
  draws.shuffle(shard_ids);
  std::vector<std::vector<int64_t>> parts(static_cast<size_t>(c.clients));
  for (int64_t s = 0; s < count; ++s) {
    const int64_t shard = shard_ids[size_t(s)], begin = n * shard / count,
                  end = n * (shard + 1) / count;
    auto& part = parts[size_t(s / c.shards_per_client)];
    part.insert(part.end(), sorted.begin() + begin, sorted.begin() + end);
  }
  return parts;
}

}  // namespace

std::vector<std::vector<int64_t>> partition(std::span<const int32_t> labels, int64_t num_classes,
                                            const PartitionConfig& c) {
  TURBINE_CHECK(c.clients >= 1, "partition: {} clients", c.clients);
  TURBINE_CHECK(int64_t(labels.size()) >= c.clients, "partition: {} clients but only {} samples",
                c.clients, labels.size());
  TURBINE_CHECK(num_classes >= 1, "partition: {} classes", num_classes);
  for (size_t i = 0; i < labels.size(); ++i)
    TURBINE_CHECK(labels[i] >= 0 && labels[i] < num_classes,
                  "partition: sample {} has label {}, outside [0, {})", i, labels[i], num_classes);
  std::vector<std::vector<int64_t>> parts;
  if (c.kind == "iid") {
    parts = iid(int64_t(labels.size()), c);
  } else if (c.kind == "dirichlet") {
    TURBINE_CHECK(c.alpha > 0 && std::isfinite(c.alpha),
                  "partition dirichlet: alpha must be positive, got {}", c.alpha);
    TURBINE_CHECK(c.max_attempts >= 1, "partition dirichlet: max_attempts {}", c.max_attempts);
    parts = dirichlet(labels, num_classes, c);
  } else if (c.kind == "shards") {
    TURBINE_CHECK(c.shards_per_client >= 1, "partition shards: shards_per_client {}",
                  c.shards_per_client);
    parts = shards(labels, c);
  } else {
    TURBINE_FAIL("partition: {} is not iid, dirichlet or shards", c.kind);
  }
  for (auto& part : parts) std::sort(part.begin(), part.end());
  return parts;
}

std::vector<std::vector<int64_t>> class_counts(const std::vector<std::vector<int64_t>>& parts,
                                               std::span<const int32_t> labels,
                                               int64_t num_classes) {
  std::vector<std::vector<int64_t>> counts(parts.size(),
                                           std::vector<int64_t>(static_cast<size_t>(num_classes)));
  for (size_t k = 0; k < parts.size(); ++k)
    for (int64_t i : parts[k]) ++counts[k][size_t(labels[size_t(i)])];
  return counts;
}

}  // namespace turbine::data
