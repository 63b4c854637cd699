// The proto form of the summaries: what an agent encodes the server decodes unchanged, and
// what no agent could have produced is refused with a message naming the problem.
#include "common/telemetry/telemetry_codec.h"

#include <gtest/gtest.h>

#include <cmath>

namespace edgefleet::telemetry {
namespace {

TEST(TelemetryCodecTest, SketchRoundTrips) {
  LatencySketch s;
  for (int i = 1; i <= 500; ++i) s.Add(i * 1e-4);
  auto back = FromProto(ToProto(s));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, s);
}

TEST(TelemetryCodecTest, HostileSketchIsInvalidArgument) {
  v1::LatencySketch p;
  p.set_first_index(-100000);
  p.add_counts(1);
  auto got = FromProto(p);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  for (size_t i = 0; i <= LatencySketch::kMaxBuckets; ++i) p.add_counts(0);
  p.set_first_index(0);
  got = FromProto(p);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(got.status().message().find("buckets"), std::string::npos) << got.status();
}

TEST(TelemetryCodecTest, HistogramRoundTripsWithTheProfileEdges) {
  FeatureHistogram h({-1.0, 0.0, 1.0});
  for (double v : {-2.0, -0.5, 0.5, 3.0, 3.0}) h.Add(v);
  h.Add(std::nan(""));
  auto back = FromProto(ToProto(h), h.edges());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->bins(), h.bins());
  EXPECT_EQ(back->nan_count(), 1u);
  EXPECT_EQ(back->min(), -2.0);
  EXPECT_EQ(back->max(), 3.0);
  EXPECT_EQ(back->sum(), h.sum());
}

TEST(TelemetryCodecTest, HistogramBinnedByAnotherProfileIsInvalidArgument) {
  FeatureHistogram h({0.0});
  h.Add(1);
  auto got = FromProto(ToProto(h), {0.0, 1.0});
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(got.status().message().find("2 bins"), std::string::npos) << got.status();
  v1::FeatureWindow bad = ToProto(h);
  bad.set_min(5);
  bad.set_max(-5);
  EXPECT_EQ(FromProto(bad, {0.0}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgefleet::telemetry
