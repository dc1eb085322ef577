// The federated partitioners (lib/data/partition.hpp): every sample goes to
// one client; IID parts are near-equal; Dirichlet proportions have the
// distribution's variance and few classes per client at small alpha; shards
// give each client its shards' classes only; all deterministic by seed; bad
// settings are refused clearly.
#define BOOST_TEST_MODULE partition
#include <boost/test/unit_test.hpp>
#include <set>

#include "data/partition.hpp"
#include "test_util.hpp"

using namespace turbine;
using namespace turbine::testing;

namespace {

// n samples of `classes` balanced classes, interleaved.
std::vector<int32_t> balanced(int64_t n, int32_t classes) {
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[size_t(i)] = int32_t(i % classes);
  return labels;
}

void check_cover(const std::vector<std::vector<int64_t>>& parts, int64_t n) {
  std::vector<int> seen(static_cast<size_t>(n), 0);
  for (const auto& part : parts)
    for (int64_t i : part) ++seen[size_t(i)];
  BOOST_TEST(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
}

// Classes holding more than `share` of a client's samples, averaged over clients.
double mean_classes(const std::vector<std::vector<int64_t>>& counts, double share) {
  double total = 0;
  for (const auto& row : counts) {
    int64_t size = 0;
    for (int64_t v : row) size += v;
    for (int64_t v : row) total += double(v) > share * double(size);
  }
  return total / double(counts.size());
}

}  // namespace

BOOST_AUTO_TEST_CASE(iid_parts_are_near_equal_and_seeded) {
  const auto labels = balanced(1003, 10);
  data::PartitionConfig c;
  c.clients = 10;
  const auto parts = data::partition(labels, 10, c);
  check_cover(parts, 1003);
  for (const auto& part : parts) BOOST_TEST((part.size() == 100 || part.size() == 101));
  BOOST_TEST(data::partition(labels, 10, c) == parts);
  c.seed = 99;
  BOOST_TEST(data::partition(labels, 10, c) != parts);
}

BOOST_AUTO_TEST_CASE(dirichlet_follows_its_concentration) {
  const int64_t clients = 50, n = 20000;
  const auto labels = balanced(n, 10);
  data::PartitionConfig c;
  c.kind = "dirichlet";
  c.clients = clients;
  c.min_partition_size = 1;
  for (double alpha : {0.1, 0.5, 100.0}) {
    c.alpha = alpha;
    const auto parts = data::partition(labels, 10, c);
    check_cover(parts, n);
    BOOST_TEST(data::partition(labels, 10, c) == parts);
    // Each class's proportions over the clients: Var p = (N - 1) / (N^2 (N alpha + 1)).
    const auto counts = data::class_counts(parts, labels, 10);
    double sum_sq = 0;
    for (int k = 0; k < 10; ++k)
      for (int64_t j = 0; j < clients; ++j) {
        const double p = double(counts[size_t(j)][size_t(k)]) / double(n / 10);
        sum_sq += (p - 1.0 / clients) * (p - 1.0 / clients);
      }
    const double measured = sum_sq / (10.0 * clients),
                 expected =
                     double(clients - 1) / (double(clients * clients) * (clients * alpha + 1));
    BOOST_TEST_MESSAGE("alpha " << alpha << ": variance " << measured << ", expected " << expected);
    if (alpha < 50) {
      BOOST_TEST(measured > 0.7 * expected);
      BOOST_TEST(measured < 1.3 * expected);
    }
    const double classes = mean_classes(counts, 0.05);
    if (alpha == 0.1) BOOST_TEST(classes < 4.0);
    if (alpha == 100.0) BOOST_TEST(classes > 9.0);
  }
}

BOOST_AUTO_TEST_CASE(shards_give_each_client_its_shards_classes) {
  const auto labels = balanced(1000, 10);
  data::PartitionConfig c;
  c.kind = "shards";
  c.clients = 10;
  c.shards_per_client = 2;
  const auto parts = data::partition(labels, 10, c);
  check_cover(parts, 1000);
  for (const auto& row : data::class_counts(parts, labels, 10)) {
    int64_t classes = 0, size = 0;
    for (int64_t v : row) {
      classes += v > 0;
      size += v;
    }
    BOOST_TEST(size == 100);
    BOOST_TEST(classes <= 2);  // each shard of 50 lies inside one class of 100
  }
  BOOST_TEST(data::partition(labels, 10, c) == parts);
}

BOOST_AUTO_TEST_CASE(bad_settings_are_refused) {
  const auto labels = balanced(100, 10);
  data::PartitionConfig c;
  c.kind = "dirichlet";
  c.alpha = 0;
  BOOST_TEST(contains(error_of([&] { data::partition(labels, 10, c); }), "alpha must be positive"));
  c.alpha = 0.01;
  c.clients = 20;
  c.min_partition_size = 5;
  BOOST_TEST(contains(error_of([&] { data::partition(labels, 10, c); }), "min_partition_size 5"));
  c = {};
  c.clients = 101;
  BOOST_TEST(contains(error_of([&] { data::partition(labels, 10, c); }), "101 clients"));
  c = {};
  c.kind = "shards";
  c.clients = 60;
  BOOST_TEST(contains(error_of([&] { data::partition(labels, 10, c); }), "at least 120 samples"));
  c = {};
  c.kind = "label_skew";
  BOOST_TEST(
      contains(error_of([&] { data::partition(labels, 10, c); }), "iid, dirichlet or shards"));
  auto bad = labels;
  bad[7] = 12;
  c = {};
  BOOST_TEST(contains(error_of([&] { data::partition(bad, 10, c); }), "sample 7 has label 12"));
}
