// Merging telemetry summaries by addition (no database): counts, errors, sketches, histograms
// with their min/max/sum, histograms that do not line up, profiles kept apart; and the time
// and duration forms the stats queries accept.
#include <gtest/gtest.h>

#include "common/telemetry/telemetry_codec.h"
#include "server/telemetry/rollups.h"
#include "server/telemetry/stats.h"

namespace edgefleet::server::telemetry {
namespace {

v1::FeatureWindow Hist(std::vector<uint64_t> bins, double min, double max, double sum,
                       uint64_t nan = 0) {
  v1::FeatureWindow f;
  for (uint64_t b : bins) f.add_bins(b);
  f.set_min(min);
  f.set_max(max);
  f.set_sum(sum);
  f.set_nan_count(nan);
  return f;
}

v1::TelemetryWindow Window(uint64_t requests, std::vector<double> latencies,
                           std::vector<v1::FeatureWindow> features, std::string profile = "p1") {
  v1::TelemetryWindow w;
  w.set_request_count(requests);
  edgefleet::telemetry::LatencySketch s;
  for (double l : latencies) s.Add(l);
  *w.mutable_latency() = edgefleet::telemetry::ToProto(s);
  for (auto& f : features) *w.add_features() = f;
  *w.mutable_outputs() = Hist({requests, 0}, 0, 0, 0);
  w.set_profile_sha256(profile);
  return w;
}

TEST(MergeTest, WindowsAddUp) {
  MergedTelemetry m;
  v1::TelemetryWindow a = Window(3, {0.001, 0.002, 0.003}, {Hist({1, 2, 0}, -1, 0.5, 0.2)});
  auto* e = a.add_errors();
  e->set_reason(v1::PREDICT_ERROR_REASON_OVERLOADED);
  e->set_count(1);
  AddWindow(m, a);
  AddWindow(m, Window(2, {0.004, 0.005}, {Hist({0, 0, 2}, 3, 4, 7, 5)}));
  EXPECT_EQ(m.windows, 2u);
  EXPECT_EQ(m.requests, 5u);
  EXPECT_EQ(m.error_count(), 1u);
  EXPECT_EQ(m.latency.count(), 5u);
  EXPECT_EQ(m.profile_sha256, "p1");
  ASSERT_EQ(m.features.size(), 1u);
  const v1::FeatureWindow& f = m.features[0];
  EXPECT_EQ(std::vector<uint64_t>(f.bins().begin(), f.bins().end()),
            (std::vector<uint64_t>{1, 2, 2}));
  EXPECT_EQ(f.min(), -1);
  EXPECT_EQ(f.max(), 4);
  EXPECT_DOUBLE_EQ(f.sum(), 7.2);
  EXPECT_EQ(f.nan_count(), 5u);
  EXPECT_EQ(m.outputs.bins(0), 5u);
  EXPECT_EQ(m.windows_partly_merged, 0u);
}

TEST(MergeTest, AnEmptyHistogramDoesNotSpoilMinAndMax) {
  v1::FeatureWindow into = Hist({0, 0}, 0, 0, 0, 3);  // only NaNs so far
  ASSERT_TRUE(MergeFeatureWindow(into, Hist({1, 1}, 5, 9, 14)));
  EXPECT_EQ(into.min(), 5);
  EXPECT_EQ(into.max(), 9);
  ASSERT_TRUE(MergeFeatureWindow(into, Hist({0, 0}, 0, 0, 0)));
  EXPECT_EQ(into.min(), 5);
  EXPECT_FALSE(MergeFeatureWindow(into, Hist({1, 1, 1}, 0, 1, 1))) << "other bin count";
  EXPECT_EQ(into.bins_size(), 2);
}

TEST(MergeTest, HistogramsThatDoNotLineUpAreLeftOutAndCounted) {
  MergedTelemetry m;
  AddWindow(m, Window(2, {0.001, 0.001}, {Hist({1, 1}, 0, 1, 1)}));
  AddWindow(m, Window(4, {0.001}, {Hist({1, 1, 2}, 0, 1, 1)}));
  EXPECT_EQ(m.requests, 6u) << "its counts are in";
  EXPECT_EQ(m.latency.count(), 3u);
  EXPECT_EQ(m.features[0].bins_size(), 2);
  EXPECT_EQ(m.features[0].bins(0), 1u) << "its histograms are not";
  EXPECT_EQ(m.windows_partly_merged, 1u);
}

TEST(MergeTest, StoredFormRoundTripsAndMergesOfMergesAddUp) {
  MergedTelemetry a;
  AddWindow(a, Window(2, {0.001, 0.01}, {Hist({1, 1}, 0, 1, 1)}));
  MergedTelemetry b;
  AddWindow(b, Window(3, {0.1, 0.2, 0.3}, {Hist({0, 3}, 2, 3, 7)}));
  AddWindow(b, Window(1, {0.1}, {Hist({1, 0}, -2, -2, -2)}));
  MergedTelemetry stored;
  AddWindow(stored, ToWindow(b), b.windows);
  EXPECT_EQ(stored.windows, 2u);
  EXPECT_EQ(stored.latency, b.latency);
  Merge(a, stored);
  EXPECT_EQ(a.windows, 3u);
  EXPECT_EQ(a.requests, 6u);
  EXPECT_EQ(a.features[0].bins(0), 2u);
  EXPECT_EQ(a.features[0].bins(1), 4u);
  EXPECT_EQ(a.features[0].min(), -2);
  EXPECT_EQ(a.features[0].max(), 3);
}

TEST(MergeTest, ProfilesMergeTheirCountsButNotTheirHistograms) {
  MergedTelemetry p1;
  AddWindow(p1, Window(2, {0.001, 0.001}, {Hist({1, 1}, 0, 1, 1)}, "p1"));
  MergedTelemetry p2;
  AddWindow(p2, Window(3, {0.002}, {Hist({1, 1}, 0, 1, 1)}, "p2"));
  MergedTelemetry both = MergeProfiles({p1, p2});
  EXPECT_EQ(both.requests, 5u);
  EXPECT_EQ(both.latency.count(), 3u);
  EXPECT_TRUE(both.features.empty());
  EXPECT_EQ(MergeProfiles({p1}).features.size(), 1u);
}

TEST(MergeTest, BucketsAreWholeMinutesAlsoBefore1970) {
  EXPECT_EQ(BucketStart(125), 120);
  EXPECT_EQ(BucketStart(120), 120);
  EXPECT_EQ(BucketStart(-1), -60);
}

TEST(QueryTimeTest, AcceptsNowOffsetsAndRfc3339) {
  const Clock::TimePoint now = FromUnixSeconds(1'800'000'000);
  EXPECT_EQ(*ParseQueryTime("", now, "-1h", "from"), now - std::chrono::hours(1));
  EXPECT_EQ(*ParseQueryTime("now", now, "-1h", "to"), now);
  EXPECT_EQ(*ParseQueryTime("-90s", now, "", "from"), now - std::chrono::seconds(90));
  EXPECT_EQ(*ParseQueryTime("-2d", now, "", "from"), now - std::chrono::hours(48));
  EXPECT_EQ(ToUnixSeconds(*ParseQueryTime("2027-01-15T08:00:00Z", now, "", "from")), 1'800'000'000);
  EXPECT_EQ(ToUnixSeconds(*ParseQueryTime("2027-01-15T09:00:00+01:00", now, "", "from")),
            1'800'000'000);
  for (const char* bad : {"yesterday", "-1", "-1y", "--1h", "-0m", "2027-01-15"}) {
    auto t = ParseQueryTime(bad, now, "", "from");
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(t.status().message().find("from"), std::string::npos) << t.status();
  }
  EXPECT_EQ(*ParseQueryDuration("5m", "step"), std::chrono::minutes(5));
  EXPECT_EQ(*ParseQueryDuration("90", "step"), std::chrono::seconds(90));
  EXPECT_FALSE(ParseQueryDuration("5x", "step").ok());
}

}  // namespace
}  // namespace edgefleet::server::telemetry
