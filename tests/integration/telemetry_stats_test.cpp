// Fleet telemetry through the operator's path: agents answer Predicts, their windows are
// stored, the server's roll-up job merges them, and `edgefleetctl model stats -o json`, REST
// and /metrics all show the requests counted (by model, version and hw, never by device);
// bad stats queries are 400 with a JSON error; `edgefleetctl device telemetry` drills down.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "tests/integration/integration_fixture.h"

namespace edgefleet::test {
namespace {

class TelemetryStatsTest : public IntegrationTest {
 protected:
  // Requests of classifier v1 the server stored in windows (the truth the roll-ups must match).
  uint64_t StoredRequests(const std::string& where = "true") {
    std::string v = db_->QueryValue(
        "SELECT coalesce(sum(request_count), 0) FROM telemetry_windows WHERE model_name = "
        "'classifier' AND version = '1' AND " +
        where);
    return std::stoull(v);
  }

  // `edgefleetctl model stats classifier 1 -o json ARGS...`, parsed.
  std::optional<v1::ModelStatsResponse> CtlStats(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"model", "stats", "classifier", "1", "-o", "json"};
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult r = server_->Ctl(args);
    if (r.exit_code != 0) {
      ADD_FAILURE() << "model stats failed: " << r.err;
      return std::nullopt;
    }
    v1::ModelStatsResponse stats;
    if (!google::protobuf::util::JsonStringToMessage(r.out, &stats).ok()) {
      ADD_FAILURE() << "not ModelStatsResponse JSON: " << r.out;
      return std::nullopt;
    }
    return stats;
  }
};

TEST_F(TelemetryStatsTest, RequestsAnsweredOnDevicesShowInStatsRestAndMetrics) {
  server_->set_extra_args({"--telemetry-rollup-interval-seconds", "1"});
  server_->Start();
  AgentHarness& jetson = StartAgent("cam-jetson", NewEnrollmentToken(1, {{"hw", "jetson"}}));
  AgentHarness& plain = StartAgent("cam-plain", NewEnrollmentToken(1));
  ASSERT_TRUE(WaitForActiveDevices(2));
  PushAndDeploy("classifier", "1", TestModel("classifier_v1.onnx"));
  ASSERT_TRUE(WaitForServedVersion(jetson, "classifier", "1"));
  ASSERT_TRUE(WaitForServedVersion(plain, "classifier", "1"));
  for (int i = 0; i < 20; ++i) {
    v1::PredictResponse response;
    ASSERT_TRUE(PredictSample(jetson, "classifier", &response).ok());
    ASSERT_TRUE(PredictSample(plain, "classifier", &response).ok());
  }
  // The windows holding these Predicts reach the server (the agents cut one a second).
  ASSERT_TRUE(WaitFor([&] { return StoredRequests() >= 40; }, kLongWait, 200ms));

  // No more Predicts from here: the stored total settles, and the roll-ups catch up with it.
  std::optional<v1::ModelStatsResponse> stats;
  uint64_t stored = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        stored = StoredRequests();
        stats = CtlStats({"--from", "-10m", "--step", "1m"});
        return stats.has_value() && stats->total().requests() == stored;
      },
      kLongWait, 500ms))
      << "stored " << stored << ", stats say "
      << (stats.has_value() ? stats->total().requests() : 0);
  EXPECT_GE(stats->total().requests(), 40u);
  // From 10 minutes ago rounded down to its minute until now: 11 points (10 on the minute).
  EXPECT_GE(stats->points_size(), 10);
  EXPECT_LE(stats->points_size(), 11);
  EXPECT_EQ(stats->step_seconds(), 60u);
  EXPECT_TRUE(stats->total().has_latency_p99_seconds());
  EXPECT_GT(stats->total().latency_p50_seconds(), 0);
  EXPECT_EQ(stats->total().errors(), 0u);
  uint64_t summed = 0;
  for (const auto& p : stats->points()) summed += p.requests();
  EXPECT_EQ(summed, stored);

  // Per hw: the jetson device's requests alone; --hw "" is the device without an hw label.
  auto by_jetson = CtlStats({"--from", "-10m", "--hw", "jetson"});
  ASSERT_TRUE(by_jetson.has_value());
  EXPECT_EQ(by_jetson->total().requests(), StoredRequests("hw = 'jetson'"));
  auto by_none = CtlStats({"--from", "-10m", "--hw", ""});
  ASSERT_TRUE(by_none.has_value());
  EXPECT_EQ(by_none->total().requests(), StoredRequests("hw = ''"));
  CommandResult table = server_->Ctl({"model", "stats", "classifier", "1", "--from", "-5m"});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("TOTAL"), std::string::npos) << table.out;

  // /metrics: by model, version and hw, summing to what was stored; no device label anywhere.
  std::string metrics = server_->Metrics();
  EXPECT_EQ(MetricValue(metrics, "edgefleet_inference_requests_total",
                        {{"model", "classifier"}, {"version", "1"}}),
            static_cast<double>(stored));
  EXPECT_EQ(MetricValue(metrics, "edgefleet_inference_requests_total", {{"hw", "jetson"}}),
            static_cast<double>(StoredRequests("hw = 'jetson'")));
  EXPECT_TRUE(MetricValue(metrics, "edgefleet_inference_latency_seconds_bucket",
                          {{"model", "classifier"}, {"le", "+Inf"}})
                  .has_value());
  EXPECT_EQ(metrics.find("device_id="), std::string::npos);
  EXPECT_EQ(metrics.find("device="), std::string::npos);
  for (const std::string& id : {jetson.device_id(), plain.device_id()}) {
    EXPECT_EQ(metrics.find(id), std::string::npos) << "device id " << id << " in /metrics";
  }
  const std::string metrics_file = tmp_.Sub("metrics.txt");
  { std::ofstream(metrics_file) << metrics; }
  const std::string check = "/usr/bin/promtool check metrics < " + metrics_file + " > " +
                            tmp_.Sub("promtool.out") + " 2>&1";
  const int rc = std::system(check.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << "promtool check metrics failed";

  // Per-device drill-down from the raw windows.
  CommandResult device = server_->Ctl({"device", "telemetry", jetson.device_id(), "-o", "json"});
  ASSERT_EQ(device.exit_code, 0) << device.err;
  v1::DeviceTelemetryResponse windows;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(device.out, &windows).ok()) << device.out;
  ASSERT_GT(windows.windows_size(), 0);
  uint64_t device_requests = 0;
  for (const auto& w : windows.windows()) device_requests += w.requests();
  EXPECT_EQ(device_requests, StoredRequests("hw = 'jetson'"));
  CommandResult ghost = server_->Ctl({"device", "telemetry", "no-such-device"});
  EXPECT_EQ(ghost.exit_code, 1);
  EXPECT_NE(ghost.err.find("NOT_FOUND"), std::string::npos) << ghost.err;
}

TEST_F(TelemetryStatsTest, BadStatsQueriesAreRefusedWithAJsonError) {
  server_->Start();
  auto http = server_->Http();
  const std::string base = "/v1/models/classifier/versions/1/stats";
  auto get = [&](const std::string& query) {
    return http->Get(base + query, server_->AuthHeaders());
  };
  for (const std::string& query :
       {std::string("?step=30s"), std::string("?step=90s"), std::string("?from=-1h&to=-2h"),
        std::string("?from=-30d&step=1m"), std::string("?from=yesterday"),
        std::string("?to=2026-13-01T00:00:00Z"), std::string("?step=5")}) {
    auto res = get(query);
    ASSERT_TRUE(res) << query;
    EXPECT_EQ(res->status, 400) << query << ": " << res->body;
    EXPECT_NE(res->body.find("\"code\":\"INVALID_ARGUMENT\""), std::string::npos)
        << query << ": " << res->body;
  }
  auto ok = get("?from=-2h&to=now&step=5m&hw=jetson");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_NE(ok->body.find("\"points\""), std::string::npos) << ok->body;
  EXPECT_NE(ok->body.find("\"hw\":\"jetson\""), std::string::npos) << ok->body;
  auto unauthenticated = http->Get(base);
  ASSERT_TRUE(unauthenticated);
  EXPECT_EQ(unauthenticated->status, 401);
  auto unknown_device = http->Get("/v1/devices/ghost/telemetry", server_->AuthHeaders());
  ASSERT_TRUE(unknown_device);
  EXPECT_EQ(unknown_device->status, 404) << unknown_device->body;
}

}  // namespace
}  // namespace edgefleet::test
