// The window recorder as the request path uses it: vector and image inputs binned per feature,
// classifier and score outputs, errors by reason, windows cut and restarted, and many threads
// recording at once without losing a request.
#include "agent/telemetry/window_recorder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "common/telemetry/reference_profile.h"
#include "common/telemetry/telemetry_codec.h"
#include "google/protobuf/util/time_util.h"

namespace edgefleet::agent {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using Clock = std::chrono::system_clock;

const Clock::time_point kT0 = Clock::time_point(std::chrono::seconds(1'800'000'000));

TensorData Vector(std::vector<float> values, int64_t rows = 1) {
  return {.name = "x",
          .shape = {rows, static_cast<int64_t>(values.size()) / rows},
          .data = std::move(values)};
}

BinningProfile FourFeatures() {
  BinningProfile p;
  p.feature_edges.assign(4, {0.0, 1.0});  // bins: < 0, [0, 1), >= 1
  p.output_edges = {0.5, 1.5};            // classes 0, 1, 2
  p.profile_sha256 = "profile";
  return p;
}

TEST(WindowRecorderTest, VectorInputsAreBinnedPerFeatureAndClassesCounted) {
  WindowRecorder r("classifier", "2", FourFeatures(), kT0);
  // Two requests, the second with two rows; the answers pick classes 2, 0, 0.
  r.Record({Vector({-1, 0.5, 2, 0.5})}, std::vector<TensorData>{Vector({0.1f, 0.2f, 0.7f})},
           milliseconds(2));
  r.Record({Vector({0.5, 0.5, 0.5, 0.5, 3, 3, 3, 3}, 2)},
           std::vector<TensorData>{Vector({0.9f, 0.05f, 0.05f, 0.8f, 0.1f, 0.1f}, 2)},
           milliseconds(4));
  const v1::TelemetryWindow w = r.Cut(kT0 + std::chrono::seconds(60));
  EXPECT_EQ(w.model_name(), "classifier");
  EXPECT_EQ(w.version(), "2");
  EXPECT_EQ(w.request_count(), 2u);
  EXPECT_EQ(w.errors_size(), 0);
  EXPECT_EQ(w.profile_sha256(), "profile");
  EXPECT_EQ(google::protobuf::util::TimeUtil::TimestampToSeconds(w.window_end()) -
                google::protobuf::util::TimeUtil::TimestampToSeconds(w.window_start()),
            60);
  ASSERT_EQ(w.features_size(), 4);
  // Feature 0 saw -1, 0.5, 3; feature 2 saw 2, 0.5, 3.
  EXPECT_EQ(std::vector<uint64_t>(w.features(0).bins().begin(), w.features(0).bins().end()),
            (std::vector<uint64_t>{1, 1, 1}));
  EXPECT_EQ(std::vector<uint64_t>(w.features(2).bins().begin(), w.features(2).bins().end()),
            (std::vector<uint64_t>{0, 1, 2}));
  EXPECT_EQ(w.features(0).min(), -1);
  EXPECT_EQ(w.features(0).max(), 3);
  EXPECT_DOUBLE_EQ(w.features(0).sum(), 2.5);
  EXPECT_EQ(std::vector<uint64_t>(w.outputs().bins().begin(), w.outputs().bins().end()),
            (std::vector<uint64_t>{2, 0, 1}));
  auto latency = telemetry::FromProto(w.latency());
  ASSERT_TRUE(latency.ok());
  EXPECT_EQ(latency->count(), 2u);
  EXPECT_NEAR(*latency->Quantile(1), 0.004, 0.004 * 0.01);
}

TEST(WindowRecorderTest, ImageInputsGiveOneFeaturePerChannelFromItsMeanLevel) {
  BinningProfile p;
  p.feature_edges.assign(3, {0.5});
  WindowRecorder r("detector", "1", p, kT0);
  // One 3-channel 2x2 image: channel means 0.25, 0.75, 0.5.
  TensorData image{
      .name = "img", .shape = {1, 3, 2, 2}, .data = {0, 0, 0, 1, 1, 1, 1, 0, 0.5, 0.5, 0.5, 0.5}};
  r.Record({image}, std::vector<TensorData>{Vector({0.3f})}, milliseconds(1));
  const auto w = r.Cut(kT0 + std::chrono::seconds(1));
  ASSERT_EQ(w.features_size(), 3);
  EXPECT_EQ(w.features(0).bins(0), 1u);
  EXPECT_EQ(w.features(1).bins(1), 1u);
  EXPECT_EQ(w.features(2).bins(1), 1u) << "0.5 falls in [0.5, +inf)";
  EXPECT_DOUBLE_EQ(w.outputs().sum(), 0.3f) << "a single score is the output value itself";
}

TEST(WindowRecorderTest, ErrorsAreCountedByReasonAndNonFiniteAnswersAreErrors) {
  WindowRecorder r("classifier", "2", FourFeatures(), kT0);
  const std::vector<TensorData> in{Vector({0, 0, 0, 0})};
  r.Record(in, absl::InvalidArgumentError("shape"), microseconds(10));
  r.Record(in, absl::InternalError("engine"), microseconds(10));
  r.Record(in, absl::InternalError("engine"), microseconds(10));
  r.Record(in, absl::ResourceExhaustedError("queue full"), microseconds(10));
  r.Record(in, std::vector<TensorData>{Vector({NAN, 1, 0})}, milliseconds(3));
  const auto w = r.Cut(kT0 + std::chrono::seconds(60));
  EXPECT_EQ(w.request_count(), 5u);
  std::map<v1::PredictErrorReason, uint64_t> errors;
  for (const auto& e : w.errors()) errors[e.reason()] = e.count();
  EXPECT_EQ(errors, (std::map<v1::PredictErrorReason, uint64_t>{
                        {v1::PREDICT_ERROR_REASON_INVALID_INPUT, 1},
                        {v1::PREDICT_ERROR_REASON_INFERENCE_FAILED, 2},
                        {v1::PREDICT_ERROR_REASON_NON_FINITE_OUTPUT, 1},
                        {v1::PREDICT_ERROR_REASON_OVERLOADED, 1}}));
  EXPECT_EQ(w.latency().counts_size() > 0, true);
  auto latency = telemetry::FromProto(w.latency());
  ASSERT_TRUE(latency.ok());
  EXPECT_EQ(latency->count(), 1u) << "only answered requests have a latency";
  EXPECT_EQ(w.outputs().bins(0) + w.outputs().bins(1) + w.outputs().bins(2), 0u)
      << "a non-finite answer's values are not outputs";
}

TEST(WindowRecorderTest, InputsThatDoNotMatchTheProfileAreCountedButNotBinned) {
  WindowRecorder r("classifier", "2", FourFeatures(), kT0);
  r.Record({Vector({1, 2, 3})}, std::vector<TensorData>{Vector({1, 0, 0})}, milliseconds(1));
  const auto w = r.Cut(kT0 + std::chrono::seconds(1));
  EXPECT_EQ(w.request_count(), 1u);
  for (const auto& f : w.features()) {
    uint64_t n = 0;
    for (uint64_t b : f.bins()) n += b;
    EXPECT_EQ(n, 0u);
  }
}

TEST(WindowRecorderTest, CutStartsAFreshWindowAndQuietWindowsAreStillReported) {
  WindowRecorder r("classifier", "2", FourFeatures(), kT0);
  r.Record({Vector({0, 0, 0, 0})}, std::vector<TensorData>{Vector({1, 0, 0})}, milliseconds(1));
  const auto first = r.Cut(kT0 + std::chrono::seconds(60));
  const auto second = r.Cut(kT0 + std::chrono::seconds(120));
  EXPECT_EQ(first.request_count(), 1u);
  EXPECT_EQ(second.request_count(), 0u);
  EXPECT_EQ(second.window_start(), first.window_end());
  EXPECT_EQ(second.features_size(), 4) << "the same bins, empty";
}

TEST(WindowRecorderTest, ConcurrentRecordsAreAllCounted) {
  WindowRecorder r("classifier", "2", FourFeatures(), kT0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      const std::vector<TensorData> in{Vector({0.5, 0.5, 0.5, 0.5})};
      const absl::StatusOr<std::vector<TensorData>> out =
          std::vector<TensorData>{Vector({0, 1, 0})};
      for (int i = 0; i < 10'000; ++i) r.Record(in, out, microseconds(100 + i % 50));
    });
  }
  for (auto& t : threads) t.join();
  const auto w = r.Cut(kT0 + std::chrono::seconds(60));
  EXPECT_EQ(w.request_count(), 40'000u);
  EXPECT_EQ(w.features(3).bins(1), 40'000u);
  EXPECT_EQ(w.outputs().bins(1), 40'000u);
}

TEST(BinningProfileTest, ReferenceWithBadEdgesIsRefused) {
  v1::ReferenceProfile p;
  p.add_features()->add_edges(1.0);
  p.mutable_features(0)->add_edges(1.0);
  auto got = BinningProfile::FromReference(p);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(got.status().message().find("feature 0"), std::string::npos) << got.status();
  p.mutable_features(0)->set_edges(1, 2.0);
  p.set_profile_sha256("abc");
  got = BinningProfile::FromReference(p);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->feature_edges, (std::vector<std::vector<double>>{{1.0, 2.0}}));
  EXPECT_EQ(got->profile_sha256, "abc");
}

TEST(BinningForTest, WithoutAReferenceEveryFeatureIsBinnedByTheDefaultProfile) {
  v1::ModelVersion m;
  m.add_inputs()->add_shape(1);
  m.mutable_inputs(0)->add_shape(4);
  m.add_outputs()->add_shape(1);
  m.mutable_outputs(0)->add_shape(3);
  BinningProfile b = BinningFor(m);
  ASSERT_EQ(b.feature_edges.size(), 4u);
  EXPECT_EQ(b.feature_edges[3], telemetry::DefaultEdges());
  EXPECT_EQ(b.output_edges, (std::vector<double>{0.5, 1.5}));
  EXPECT_EQ(b.profile_sha256, telemetry::DefaultProfile(m).profile_sha256());
  // Binned from the first request on.
  WindowRecorder recorder("m", "1", b, kT0);
  recorder.Record({Vector({0.1f, 0.2f, 0.3f, 0.4f})}, std::vector<TensorData>{Vector({0, 1, 0})},
                  microseconds(100));
  v1::TelemetryWindow w = recorder.Cut(kT0 + std::chrono::seconds(1));
  ASSERT_EQ(w.features_size(), 4);
  EXPECT_EQ(w.features(0).bins_size(), 143);
  EXPECT_EQ(w.profile_sha256(), b.profile_sha256);

  // The verified profile kept with the installed version wins.
  auto uploaded = telemetry::ComputeProfile(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8}, 4,
                                            std::vector<double>{1, 2}, 3);
  ASSERT_TRUE(uploaded.ok());
  *m.mutable_reference_profile() = *uploaded;
  b = BinningFor(m);
  EXPECT_EQ(b.profile_sha256, uploaded->profile_sha256());
  EXPECT_EQ(b.feature_edges[0], telemetry::FeatureEdges(*uploaded, 0));
}

}  // namespace
}  // namespace edgefleet::agent
