// Feature histograms: binning at the edges, NaN and infinities kept apart, merging only alike
// histograms, rebuilding from (untrusted) parts, and decile edges from a reference sample.
#include "common/telemetry/feature_histogram.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace edgefleet::telemetry {
namespace {

TEST(FeatureHistogramTest, ValuesFallIntoHalfOpenBinsAndNonFiniteValuesAreCountedApart) {
  FeatureHistogram h({0.0, 1.0, 2.0});
  for (double v : {-5.0, 0.0, 0.5, 1.0, 1.99, 2.0, 7.0}) h.Add(v);
  h.Add(std::nan(""));
  h.Add(std::numeric_limits<double>::infinity());
  EXPECT_EQ(h.bins(), (std::vector<uint64_t>{1, 2, 2, 2}));
  EXPECT_EQ(h.count(), 7u);
  EXPECT_EQ(h.nan_count(), 2u);
  EXPECT_EQ(h.min(), -5.0);
  EXPECT_EQ(h.max(), 7.0);
  EXPECT_DOUBLE_EQ(h.sum(), -5.0 + 0.5 + 1.0 + 1.99 + 2.0 + 7.0);
}

TEST(FeatureHistogramTest, MergeAddsOnlyHistogramsWithTheSameEdges) {
  FeatureHistogram a({0.0}), b({0.0}), other({1.0});
  a.Add(-1);
  b.Add(3);
  b.Add(std::nan(""));
  other.Add(0.5);
  ASSERT_TRUE(a.Merge(b));
  EXPECT_EQ(a.bins(), (std::vector<uint64_t>{1, 1}));
  EXPECT_EQ(a.nan_count(), 1u);
  EXPECT_EQ(a.min(), -1.0);
  EXPECT_EQ(a.max(), 3.0);
  EXPECT_FALSE(a.Merge(other));
  EXPECT_EQ(a.count(), 2u) << "a refused merge changes nothing";
}

TEST(FeatureHistogramTest, EmptyHistogramHasNoMinOrMax) {
  FeatureHistogram h({1.0});
  EXPECT_FALSE(h.min().has_value());
  EXPECT_FALSE(h.max().has_value());
}

TEST(FeatureHistogramTest, FromPartsRefusesWhatNoAgentSends) {
  EXPECT_TRUE(FeatureHistogram::FromParts({0.0, 1.0}, {1, 2, 3}, 0, -1, 4, 5).has_value());
  EXPECT_FALSE(FeatureHistogram::FromParts({1.0, 0.0}, {1, 2, 3}, 0, -1, 4, 5).has_value())
      << "edges out of order";
  EXPECT_FALSE(FeatureHistogram::FromParts({0.0, 0.0}, {1, 2, 3}, 0, -1, 4, 5).has_value())
      << "repeated edge";
  EXPECT_FALSE(
      FeatureHistogram::FromParts({0.0, std::nan("")}, {1, 2, 3}, 0, -1, 4, 5).has_value());
  EXPECT_FALSE(FeatureHistogram::FromParts({0.0, 1.0}, {1, 2}, 0, -1, 4, 5).has_value())
      << "bin count";
  EXPECT_FALSE(FeatureHistogram::FromParts({0.0}, {1, 1}, 0, 4, -1, 5).has_value()) << "min > max";
  EXPECT_FALSE(FeatureHistogram::FromParts({0.0}, {~uint64_t{0}, 1}, 0, -1, 4, 5).has_value())
      << "count overflow";
  EXPECT_FALSE(FeatureHistogram::FromParts(
                   std::vector<double>(FeatureHistogram::kMaxEdges + 1, 0.0),
                   std::vector<uint64_t>(FeatureHistogram::kMaxEdges + 2, 0), 0, 0, 0, 0)
                   .has_value());
}

TEST(DecileEdgesTest, UniformSampleGivesTenEqualBins) {
  std::vector<double> sample(1000);
  std::iota(sample.begin(), sample.end(), 0.0);
  const auto edges = DecileEdges(sample);
  ASSERT_EQ(edges.size(), 9u);
  FeatureHistogram h(edges);
  for (double v : sample) h.Add(v);
  for (uint64_t bin : h.bins()) EXPECT_EQ(bin, 100u);
}

TEST(DecileEdgesTest, FewDistinctValuesGiveFewerStrictlyIncreasingEdges) {
  std::vector<double> sample;
  for (int i = 0; i < 100; ++i) sample.push_back(i % 2);
  sample.push_back(std::nan(""));
  const auto edges = DecileEdges(sample);
  EXPECT_EQ(edges, (std::vector<double>{0.0, 1.0}));
  EXPECT_TRUE(FeatureHistogram::ValidEdges(edges));
  EXPECT_TRUE(DecileEdges(std::vector<double>{std::nan("")}).empty());
}

}  // namespace
}  // namespace edgefleet::telemetry
