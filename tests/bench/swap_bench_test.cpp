// bench/swap in small: five hot swaps between the test classifiers under Predict load, through
// a real host process and its Unix socket.
#include "bench/swap/swap_bench.h"

#include <gtest/gtest.h>

#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace edgefleet::bench {
namespace {

BenchOptions SmokeOptions() {
  BenchOptions options;
  options.host_binary = EDGEFLEET_BIN_DIR "/edgefleet-bench-swap";
  options.host.model_a = EDGEFLEET_TEST_DATA_DIR "/classifier_v1.onnx";
  options.host.model_b = EDGEFLEET_TEST_DATA_DIR "/classifier_v2.onnx";
  // The test models swap in well under a millisecond: spacing the swaps out lets requests run
  // while they happen.
  options.host.swap_interval_ms = 50;
  options.swaps = 5;
  options.clients = 2;
  options.rounds = 1;
  options.warmup_seconds = 0.2;
  options.steady_seconds = 1.5;
  return options;
}

TEST(SwapBenchTest, FiveSwapsUnderLoadFailNoRequest) {
  absl::StatusOr<SwapReport> report = RunSwapBench(SmokeOptions());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->swaps, 5);
  EXPECT_EQ(report->failed_requests, 0u) << report->first_error;
  EXPECT_EQ(report->wrong_answers, 0u) << report->first_error;
  // Version 1 serves before the first swap, version 2 after the fifth.
  EXPECT_GT(report->answers_v1, 0u);
  EXPECT_GT(report->answers_v2, 0u);
  EXPECT_EQ(report->answers_v1 + report->answers_v2, report->requests);
  EXPECT_GT(report->steady.calls, 0u);
  EXPECT_GT(report->swapping.calls, 0u);
  EXPECT_GT(report->swaps_per_second, 0);
  EXPECT_GT(report->rss_kib_early, 0);
  EXPECT_GT(report->rss_kib_after_all, 0);

  google::protobuf::Struct json;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(ReportJson(*report), &json).ok())
      << ReportJson(*report);
  for (const char* field :
       {"failed_requests", "wrong_answers", "steady", "swapping", "p99_ratio", "swaps_per_second",
        "rss_kib_early", "rss_kib_after_all", "rss_growth_pct", "rss_curve"}) {
    EXPECT_TRUE(json.fields().contains(field)) << field;
  }
  EXPECT_EQ(json.fields().at("failed_requests").number_value(), 0);
  EXPECT_EQ(json.fields().at("swapping").struct_value().fields().at("calls").number_value(),
            static_cast<double>(report->swapping.calls));
}

TEST(SwapBenchTest, RefusesModelsThatAnswerAlike) {
  BenchOptions options = SmokeOptions();
  options.host.model_b = options.host.model_a;
  absl::StatusOr<SwapReport> report = RunSwapBench(options);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument) << report.status();
}

}  // namespace
}  // namespace edgefleet::bench
