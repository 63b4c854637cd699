// The latency sketch against exact quantiles: every quantile within 1% relative, across
// distributions shaped like real latencies, after merging, and through its encoded form.
#include "common/telemetry/latency_sketch.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace edgefleet::telemetry {
namespace {

double ExactQuantile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(q * static_cast<double>(values.size() - 1))];
}

void ExpectQuantilesWithinOnePercent(const LatencySketch& sketch,
                                     const std::vector<double>& values) {
  for (double q : {0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0}) {
    const double exact = ExactQuantile(values, q);
    auto got = sketch.Quantile(q);
    ASSERT_TRUE(got.has_value());
    EXPECT_LE(std::abs(*got - exact), LatencySketch::kRelativeAccuracy * exact)
        << "q=" << q << " exact=" << exact << " sketch=" << *got;
  }
}

struct Distribution {
  const char* name;
  std::function<double(std::mt19937_64&)> draw;
};

class LatencySketchAccuracyTest : public ::testing::TestWithParam<Distribution> {};

TEST_P(LatencySketchAccuracyTest, QuantilesAreWithinOnePercentOfTheExactOnes) {
  std::mt19937_64 rng(7);
  std::vector<double> values;
  LatencySketch sketch;
  for (int i = 0; i < 50'000; ++i) {
    const double v = GetParam().draw(rng);
    values.push_back(v);
    sketch.Add(v);
  }
  EXPECT_EQ(sketch.count(), values.size());
  ExpectQuantilesWithinOnePercent(sketch, values);
}

INSTANTIATE_TEST_SUITE_P(Latencies, LatencySketchAccuracyTest,
                         ::testing::Values(
                             // A model answering in ~2 ms with a long tail.
                             Distribution{"lognormal",
                                          [](std::mt19937_64& r) {
                                            return std::lognormal_distribution<>(-6.2, 0.6)(r);
                                          }},
                             // Queueing: exponential around 10 ms.
                             Distribution{"exponential",
                                          [](std::mt19937_64& r) {
                                            return std::exponential_distribution<>(100)(r) + 1e-5;
                                          }},
                             // Two modes: cache hits at 50 us, misses at 40 ms.
                             Distribution{"bimodal",
                                          [](std::mt19937_64& r) {
                                            return std::bernoulli_distribution(0.9)(r)
                                                       ? std::normal_distribution<>(50e-6, 5e-6)(r)
                                                       : std::normal_distribution<>(40e-3, 4e-3)(r);
                                          }},
                             // From a microsecond to ten seconds.
                             Distribution{"log-uniform",
                                          [](std::mt19937_64& r) {
                                            return std::pow(
                                                10.0, std::uniform_real_distribution<>(-6, 1)(r));
                                          }}),
                         [](const auto& info) {
                           std::string name = info.param.name;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(LatencySketchTest, MergingSketchesEqualsSketchingTheUnion) {
  std::mt19937_64 rng(11);
  std::lognormal_distribution<> fast(-7, 0.3), slow(-3, 0.5);
  LatencySketch a, b, both;
  std::vector<double> values;
  for (int i = 0; i < 20'000; ++i) {
    const double x = fast(rng), y = slow(rng);
    a.Add(x);
    b.Add(y);
    both.Add(x);
    both.Add(y);
    values.push_back(x);
    values.push_back(y);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), both.count());
  for (double q : {0.1, 0.5, 0.9, 0.99}) EXPECT_EQ(a.Quantile(q), both.Quantile(q)) << q;
  EXPECT_NEAR(a.sum_seconds(), both.sum_seconds(), 1e-9 * both.sum_seconds());
  ExpectQuantilesWithinOnePercent(a, values);
}

TEST(LatencySketchTest, EncodedFormRoundTripsAndStaysSmall) {
  std::mt19937_64 rng(3);
  std::lognormal_distribution<> d(-5, 1);
  LatencySketch s;
  for (int i = 0; i < 100'000; ++i) s.Add(d(rng));
  s.Add(0);
  const auto e = s.Encode();
  EXPECT_LT(e.counts.size(), 1000u) << "a window's sketch must stay small to send";
  EXPECT_EQ(e.zero_count, 1u);
  auto back = LatencySketch::Decode(e);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, s);
}

TEST(LatencySketchTest, HostileEncodingsAreRefused) {
  LatencySketch::Encoded too_many;
  too_many.counts.assign(LatencySketch::kMaxBuckets + 1, 1);
  EXPECT_FALSE(LatencySketch::Decode(too_many).has_value());

  LatencySketch::Encoded out_of_range;
  out_of_range.first_index = 1 << 30;
  out_of_range.counts = {1};
  EXPECT_FALSE(LatencySketch::Decode(out_of_range).has_value());

  LatencySketch::Encoded bad_sum;
  bad_sum.counts = {1};
  bad_sum.first_index = 0;
  bad_sum.sum_seconds = std::nan("");
  EXPECT_FALSE(LatencySketch::Decode(bad_sum).has_value());

  LatencySketch::Encoded overflow;
  overflow.first_index = 0;
  overflow.counts = {~uint64_t{0}, 2};
  EXPECT_FALSE(LatencySketch::Decode(overflow).has_value());
}

TEST(LatencySketchTest, ZeroAndNegativeLatenciesCountAsZero) {
  LatencySketch s;
  s.Add(0);
  s.Add(-1);
  s.Add(0.010);
  EXPECT_EQ(s.count(), 3u);
  EXPECT_EQ(s.Quantile(0), 0.0);
  EXPECT_EQ(s.Quantile(0.5), 0.0);
  EXPECT_NEAR(*s.Quantile(1), 0.010, 0.0001);
  EXPECT_FALSE(LatencySketch().Quantile(0.5).has_value());
  EXPECT_FALSE(s.Quantile(1.5).has_value());
}

TEST(LatencySketchTest, CountAtOrBelowGivesPrometheusBucketsWithinTheSketchError) {
  LatencySketch s;
  for (int ms = 1; ms <= 100; ++ms) s.Add(ms / 1000.0);
  EXPECT_EQ(s.CountAtOrBelow(0.0005), 0u);
  EXPECT_EQ(s.CountAtOrBelow(0.0105), 10u);
  EXPECT_EQ(s.CountAtOrBelow(0.0505), 50u);
  EXPECT_EQ(s.CountAtOrBelow(1.0), 100u);
  EXPECT_EQ(s.CountAtOrBelow(std::numeric_limits<double>::infinity()), 100u);
}

}  // namespace
}  // namespace edgefleet::telemetry
