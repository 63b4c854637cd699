// The checks a telemetry window passes before it is stored, at their boundaries: clock skew,
// retention, window length, counts that contradict each other, and malformed summaries.
#include "server/telemetry/window_check.h"

#include <gtest/gtest.h>

#include "common/telemetry/telemetry_codec.h"

namespace edgefleet::server::telemetry {
namespace {

const Clock::TimePoint kNow = FromUnixSeconds(1'800'000'000);

v1::TelemetryWindow Window(int64_t start_unix, int64_t end_unix) {
  v1::TelemetryWindow w;
  w.set_sequence(7);
  w.set_model_name("classifier");
  w.set_version("2");
  w.mutable_window_start()->set_seconds(start_unix);
  w.mutable_window_end()->set_seconds(end_unix);
  w.set_request_count(10);
  edgefleet::telemetry::LatencySketch sketch;
  for (int i = 0; i < 9; ++i) sketch.Add(0.002);
  *w.mutable_latency() = edgefleet::telemetry::ToProto(sketch);
  auto* e = w.add_errors();
  e->set_reason(v1::PREDICT_ERROR_REASON_INFERENCE_FAILED);
  e->set_count(1);
  auto* f = w.add_features();
  f->add_bins(3);
  f->add_bins(7);
  f->set_min(-1);
  f->set_max(1);
  f->set_sum(2);
  return w;
}

WindowVerdict Check(const v1::TelemetryWindow& w) { return CheckWindow(w, kNow, {}); }

TEST(WindowCheckTest, AWellFormedRecentWindowPasses) {
  EXPECT_TRUE(Check(Window(1'800'000'000 - 60, 1'800'000'000)).ok);
}

TEST(WindowCheckTest, ClockSkewIsToleratedUpToFiveMinutes) {
  EXPECT_TRUE(Check(Window(1'800'000'000, 1'800'000'300)).ok);
  const auto late = Check(Window(1'800'000'000, 1'800'000'301));
  EXPECT_FALSE(late.ok);
  EXPECT_EQ(late.refusal, Refusal::kFuture);
  EXPECT_NE(late.reason.find("future"), std::string::npos) << late.reason;
}

TEST(WindowCheckTest, WindowsOlderThanTheRetentionAreExpired) {
  const int64_t thirty_days = 30 * 24 * 3600;
  EXPECT_TRUE(Check(Window(1'800'000'000 - thirty_days, 1'800'000'000 - thirty_days + 60)).ok);
  const auto old = Check(Window(1'800'000'000 - thirty_days - 1, 1'800'000'000 - thirty_days + 59));
  EXPECT_EQ(old.refusal, Refusal::kExpired);
  EXPECT_NE(old.reason.find("30-day retention"), std::string::npos) << old.reason;
}

TEST(WindowCheckTest, MalformedWindowsSayWhatIsWrong) {
  struct Case {
    const char* want;
    std::function<void(v1::TelemetryWindow&)> spoil;
  };
  const Case cases[] = {
      {"sequence", [](auto& w) { w.set_sequence(0); }},
      {"model_name", [](auto& w) { w.set_model_name("../etc"); }},
      {"window_start and window_end", [](auto& w) { w.clear_window_start(); }},
      {"before window_start", [](auto& w) { w.mutable_window_end()->set_seconds(1); }},
      {"longer than 24 h",
       [](auto& w) { w.mutable_window_start()->set_seconds(1'800'000'000 - 25 * 3600); }},
      {"not a valid time", [](auto& w) { w.mutable_window_end()->set_nanos(2'000'000'000); }},
      {"more errors than requests", [](auto& w) { w.mutable_errors(0)->set_count(11); }},
      {"no reason",
       [](auto& w) { w.mutable_errors(0)->set_reason(v1::PREDICT_ERROR_REASON_UNSPECIFIED); }},
      {"more latencies than requests",
       [](auto& w) {
         w.set_request_count(8);
         w.clear_errors();
       }},
      {"latency sketch", [](auto& w) { w.mutable_latency()->set_first_index(1 << 30); }},
      {"feature 0", [](auto& w) { w.mutable_features(0)->set_min(5); }},
      {"outputs",
       [](auto& w) {
         w.mutable_outputs()->add_bins(1);
         w.mutable_outputs()->set_sum(NAN);
       }},
  };
  for (const Case& c : cases) {
    v1::TelemetryWindow w = Window(1'800'000'000 - 60, 1'800'000'000);
    c.spoil(w);
    const auto verdict = Check(w);
    EXPECT_FALSE(verdict.ok) << c.want;
    EXPECT_EQ(verdict.refusal, Refusal::kMalformed) << c.want;
    EXPECT_NE(verdict.reason.find(c.want), std::string::npos)
        << "want '" << c.want << "' in: " << verdict.reason;
  }
}

}  // namespace
}  // namespace edgefleet::server::telemetry
