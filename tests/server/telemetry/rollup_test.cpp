// Telemetry roll-ups on PostgreSQL: every stored window counted exactly once (two replicas'
// jobs racing, an upload still open while a run goes by, a run that fails before its commit),
// late windows in their old minute, merged quantiles within the sketch's 1%, the series and
// devices-reporting reads, retention, and the Prometheus families the job feeds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "common/metrics/metrics.h"
#include "common/telemetry/telemetry_codec.h"
#include "server/store/device_repo.h"
#include "server/store/model_repo.h"
#include "server/store/telemetry_repo.h"
#include "server/telemetry/ingest.h"
#include "server/telemetry/rollup_job.h"
#include "tests/server/store/store_test_util.h"
#include "tests/support/fleet_harness.h"

namespace edgefleet::server::telemetry {
namespace {

constexpr int64_t kNow = 1'800'000'000;  // 2027-01-15T08:00:00Z, a whole minute

class RollupTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    if (HasFatalFailure()) return;
    clock_.Set(FromUnixSeconds(kNow));
    devices_ = std::make_unique<DeviceRepo>(*db_);
    models_ = std::make_unique<ModelRepo>(*db_);
    v1::Inventory inventory;
    auto* m = inventory.add_models();
    m->set_model_name("classifier");
    m->set_version("1");
    for (int d = 0; d < 4; ++d) {
      const std::string id = "cam-" + std::to_string(d);
      std::map<std::string, std::string> labels;
      if (d % 2 == 0) labels["hw"] = "jetson";
      ASSERT_TRUE(db_->Transact("test",
                                [&](Tx& tx) {
                                  return devices_->Enroll(
                                      tx, id, labels, inventory,
                                      std::string(1, static_cast<char>('0' + d)), kNow);
                                })
                      .ok());
    }
    PublishVersion(*db_, *models_, "classifier", "1", 'a');
    ingest_ = std::make_unique<TelemetryIngest>(*db_, windows_, clock_, metrics_);
    job_ = MakeJob(*db_);
  }

  std::unique_ptr<RollupJob> MakeJob(Database& db, size_t batch = 20'000) {
    return std::make_unique<RollupJob>(db, repo_, store_, clock_, metrics_,
                                       RollupJobOptions{.max_windows_per_run = batch});
  }

  // A window of `requests` requests (the first `errors` of them failed), latencies from
  // `latencies` (answered requests only), outputs binned in 3 classes.
  static v1::TelemetryWindow Window(uint64_t sequence, int64_t start_unix, uint64_t requests,
                                    uint64_t errors = 0, std::vector<double> latencies = {}) {
    v1::TelemetryWindow w;
    w.set_sequence(sequence);
    w.set_model_name("classifier");
    w.set_version("1");
    w.mutable_window_start()->set_seconds(start_unix);
    w.mutable_window_end()->set_seconds(start_unix + 10);
    w.set_request_count(requests);
    if (errors > 0) {
      auto* e = w.add_errors();
      e->set_reason(v1::PREDICT_ERROR_REASON_INVALID_INPUT);
      e->set_count(errors);
    }
    edgefleet::telemetry::LatencySketch sketch;
    if (latencies.empty()) latencies.assign(requests - errors, 0.002);
    for (double l : latencies) sketch.Add(l);
    *w.mutable_latency() = edgefleet::telemetry::ToProto(sketch);
    v1::FeatureWindow* out = w.mutable_outputs();
    out->add_bins(requests - errors);
    out->add_bins(0);
    out->add_bins(0);
    out->set_min(0);
    out->set_max(0);
    return w;
  }

  void Send(const std::string& device, uint64_t stream, std::vector<v1::TelemetryWindow> ws) {
    v1::UploadTelemetryRequest request;
    request.set_stream_id(stream);
    for (auto& w : ws) *request.add_windows() = std::move(w);
    auto answer = ingest_->Ingest(device, request);
    ASSERT_TRUE(answer.ok()) << answer.status();
    ASSERT_EQ(answer->rejected_size(), 0) << answer->rejected(0).reason();
  }

  std::string Query(const std::string& sql) { return pg_.QueryValue(sql); }

  // Runs the job until every stored window is rolled up; returns the windows it merged. A run
  // takes only windows below the oldest transaction still writing anywhere on the (shared test)
  // PostgreSQL server, so a run may take fewer while another test's transaction is open.
  size_t RollUpAll(RollupJob& job) {
    size_t windows = 0;
    for (int i = 0; i < 400; ++i) {
      auto run = job.RunOnce();
      EXPECT_TRUE(run.ok()) << run.status();
      if (!run.ok()) return windows;
      windows += run->windows;
      if (Query("SELECT count(*) FROM telemetry_windows WHERE ingest_xid >= "
                "(SELECT next_xid FROM telemetry_rollup_watermark)") == "0") {
        return windows;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // others' transactions end
    }
    ADD_FAILURE() << "windows still not rolled up";
    return windows;
  }
  size_t RollUpAll() { return RollUpAll(*job_); }

  absl::StatusOr<std::vector<MergedTelemetry>> Range(std::optional<std::string> hw,
                                                     int64_t from_unix, int64_t to_unix) {
    return db_->Transact("test", [&](Tx& tx) {
      return store_.MergeRange(tx, "classifier", "1", hw, FromUnixSeconds(from_unix),
                               FromUnixSeconds(to_unix));
    });
  }

  FakeClock clock_;
  metrics::Registry registry_;
  ServerMetrics metrics_{registry_};
  TelemetryRepo windows_;
  RollupRepo repo_;
  DatabaseRollupStore store_{repo_};
  std::unique_ptr<DeviceRepo> devices_;
  std::unique_ptr<ModelRepo> models_;
  std::unique_ptr<TelemetryIngest> ingest_;
  std::unique_ptr<RollupJob> job_;
};

TEST_F(RollupTest, WindowsAreMergedPerHwAndMinute) {
  Send("cam-0", 1, {Window(1, kNow - 120, 10, 2), Window(2, kNow - 60, 5)});
  Send("cam-1", 1, {Window(1, kNow - 110, 7, 1)});
  Send("cam-2", 1, {Window(1, kNow - 100, 3)});
  EXPECT_EQ(RollUpAll(), 4u);
  // (jetson, minute -120), (jetson, -60), ("", -120).
  EXPECT_EQ(Query("SELECT count(DISTINCT (hw, bucket_start)) FROM telemetry_rollups"), "3");
  auto all = Range(std::nullopt, kNow - 3600, kNow);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 1u) << "one profile (none)";
  const MergedTelemetry& m = all->front();
  EXPECT_EQ(m.windows, 4u);
  EXPECT_EQ(m.requests, 25u);
  EXPECT_EQ(m.errors.at(v1::PREDICT_ERROR_REASON_INVALID_INPUT), 3u);
  EXPECT_EQ(m.latency.count(), 22u);
  ASSERT_EQ(m.outputs.bins_size(), 3);
  EXPECT_EQ(m.outputs.bins(0), 22u);
  auto jetson = Range("jetson", kNow - 3600, kNow);
  ASSERT_TRUE(jetson.ok());
  ASSERT_EQ(jetson->size(), 1u);
  EXPECT_EQ(jetson->front().requests, 18u);
  auto none = Range("", kNow - 3600, kNow);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->front().requests, 7u);
  auto first_minute = Range(std::nullopt, kNow - 120, kNow - 60);
  ASSERT_TRUE(first_minute.ok());
  EXPECT_EQ(first_minute->front().requests, 20u);
  // Nothing new: the next run claims nothing and writes nothing.
  const std::string rows = Query("SELECT count(*) FROM telemetry_rollups");
  auto run = job_->RunOnce();
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->windows, 0u);
  EXPECT_EQ(Query("SELECT count(*) FROM telemetry_rollups"), rows);
}

TEST_F(RollupTest, ALateWindowAddsToItsOldMinute) {
  Send("cam-0", 1, {Window(1, kNow - 60, 4)});
  EXPECT_EQ(RollUpAll(), 1u);
  // A device that was offline for three days delivers its window now.
  const int64_t old = kNow - 3 * 24 * 3600 + 5;
  Send("cam-1", 1, {Window(1, old, 6)});
  EXPECT_EQ(RollUpAll(), 1u);
  auto then = Range(std::nullopt, old - 5, old + 55);
  ASSERT_TRUE(then.ok());
  ASSERT_EQ(then->size(), 1u);
  EXPECT_EQ(then->front().requests, 6u);
  EXPECT_EQ(Query("SELECT count(*) FROM telemetry_rollups WHERE bucket_start = to_timestamp(" +
                  std::to_string(old - 5) + ")"),
            "1");
  auto recent = Range(std::nullopt, kNow - 3600, kNow);
  ASSERT_TRUE(recent.ok());
  EXPECT_EQ(recent->front().requests, 4u);
}

TEST_F(RollupTest, AnUploadStillOpenDuringARunIsRolledUpByTheNextRun) {
  Send("cam-0", 1, {Window(1, kNow - 60, 1)});
  // The upload's transaction is open (its window inserted, not committed) while a run — on
  // another connection, as another replica's would be — goes by: the run must neither take
  // it (invisible) nor move the watermark past it.
  auto second = Database::Open({.url = pg_.url()});
  ASSERT_TRUE(second.ok());
  auto other_job = MakeJob(**second);
  absl::StatusOr<RollupRunResult> during;
  v1::TelemetryWindow late = Window(2, kNow - 60, 100);
  ASSERT_TRUE(db_->Transact("slow upload",
                            [&](Tx& tx) -> absl::Status {
                              auto inserted =
                                  windows_.InsertWindow(tx, "cam-0", 1, late, "jetson", kNow);
                              if (!inserted.ok()) return inserted.status();
                              during = other_job->RunOnce();
                              return absl::OkStatus();
                            })
                  .ok());
  ASSERT_TRUE(during.ok()) << during.status();
  EXPECT_LE(during->windows, 1u) << "at most the committed window";
  EXPECT_EQ(during->windows + RollUpAll(*other_job), 2u)
      << "the upload committed after the run: taken by a later run, not skipped";
  auto m = Range(std::nullopt, kNow - 60, kNow);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->front().requests, 101u);
  EXPECT_EQ(m->front().windows, 2u);
}

TEST_F(RollupTest, TwoReplicasRacingCountEveryWindowOnce) {
  auto second = Database::Open({.url = pg_.url()});
  ASSERT_TRUE(second.ok());
  auto job_b = MakeJob(**second, 7);  // small batches: many claims
  auto job_a = MakeJob(*db_, 5);
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  auto race = [&](RollupJob& job) {
    while (!done.load()) {
      if (!job.RunOnce().ok()) failures.fetch_add(1);
    }
    if (!job.RunUntilCaughtUp().ok()) failures.fetch_add(1);
  };
  std::thread a(race, std::ref(*job_a));
  std::thread b(race, std::ref(*job_b));
  uint64_t sent_requests = 0;
  for (uint64_t s = 1; s <= 40; ++s) {
    std::vector<v1::TelemetryWindow> batch;
    for (int d = 0; d < 3; ++d) {
      batch.push_back(Window(s * 10 + d, kNow - 600 + static_cast<int64_t>(s) * 7, s % 5 + 1));
      sent_requests += s % 5 + 1;
    }
    Send("cam-" + std::to_string(s % 4), 1, std::move(batch));
  }
  done = true;
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0);
  RollUpAll(*job_a);
  EXPECT_EQ(Query("SELECT count(*) FROM telemetry_windows"), "120");
  EXPECT_EQ(Query("SELECT sum(windows) FROM telemetry_rollups"), "120");
  EXPECT_EQ(Query("SELECT sum(requests) FROM telemetry_rollups"), std::to_string(sent_requests));
  EXPECT_EQ(test::MetricValue(registry_.Serialize(), "edgefleet_telemetry_rollup_windows_total"),
            120.0)
      << "both jobs feed this registry here; each replica exports what it merged";
}

TEST_F(RollupTest, ARunThatFailsBeforeItsCommitLeavesNothingBehind) {
  Send("cam-0", 1, {Window(1, kNow - 60, 9)});
  // A run whose transaction dies after writing its roll-up rows (a crash between the writes
  // and the commit looks the same to PostgreSQL: the transaction never commits).
  absl::Status crashed = db_->Transact("crashing run", [&](Tx& tx) -> absl::Status {
    auto claim = repo_.ClaimNewWindows(tx, 100);
    if (!claim.ok()) return claim.status();
    EXPECT_TRUE(claim->has_value());
    EXPECT_LE((*claim)->windows.size(), 1u);
    RollupRow row{.model_name = "classifier",
                  .version = "1",
                  .hw = "jetson",
                  .profile_sha256 = "",
                  .bucket_start_unix = kNow - 60,
                  .windows = 1,
                  .requests = 9,
                  .errors = 0,
                  .summary = "x"};
    if (auto s = repo_.AppendRollups(tx, **claim, {row}); !s.ok()) return s;
    return absl::InternalError("crash before commit");
  });
  EXPECT_FALSE(crashed.ok());
  EXPECT_EQ(Query("SELECT count(*) FROM telemetry_rollups"), "0");
  EXPECT_EQ(Query("SELECT next_xid FROM telemetry_rollup_watermark"), "0");
  EXPECT_EQ(RollUpAll(), 1u);
  EXPECT_EQ(Query("SELECT sum(requests) FROM telemetry_rollups"), "9");
}

TEST_F(RollupTest, WhileOneRunHoldsTheLockAnotherClaimsNothing) {
  Send("cam-0", 1, {Window(1, kNow - 60, 2)});
  auto second = Database::Open({.url = pg_.url()});
  ASSERT_TRUE(second.ok());
  auto other_job = MakeJob(**second);
  absl::StatusOr<RollupRunResult> other;
  ASSERT_TRUE(db_->Transact("first run",
                            [&](Tx& tx) -> absl::Status {
                              auto claim = repo_.ClaimNewWindows(tx, 100);
                              if (!claim.ok()) return claim.status();
                              other = other_job->RunOnce();
                              return repo_.AppendRollups(tx, **claim, {});
                            })
                  .ok());
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_FALSE(other->claimed);
  EXPECT_EQ(other->windows, 0u);
}

TEST_F(RollupTest, QuantilesOfTheMergedSketchesAreWithinOnePercentOfExact) {
  std::mt19937 rng(7);
  std::lognormal_distribution<double> latency(std::log(0.004), 0.8);
  std::vector<double> all;
  for (int d = 0; d < 4; ++d) {
    std::vector<v1::TelemetryWindow> ws;
    for (uint64_t s = 1; s <= 5; ++s) {
      std::vector<double> ls(400);
      for (double& l : ls) l = latency(rng);
      all.insert(all.end(), ls.begin(), ls.end());
      ws.push_back(Window(s, kNow - 600 + static_cast<int64_t>(s) * 60, ls.size(), 0, ls));
    }
    Send("cam-" + std::to_string(d), 1, std::move(ws));
  }
  ASSERT_GT(RollUpAll(), 0u);
  auto merged = Range(std::nullopt, kNow - 3600, kNow);
  ASSERT_TRUE(merged.ok());
  ASSERT_EQ(merged->front().latency.count(), all.size());
  std::sort(all.begin(), all.end());
  for (double q : {0.5, 0.9, 0.95, 0.99}) {
    const double exact = all[static_cast<size_t>(q * static_cast<double>(all.size() - 1))];
    const double got = *merged->front().latency.Quantile(q);
    EXPECT_NEAR(got, exact, exact * 0.01) << "q=" << q;
  }
}

TEST_F(RollupTest, SeriesHasEveryPointAndSplitsByStep) {
  Send("cam-0", 1, {Window(1, kNow - 300, 1), Window(2, kNow - 240, 2), Window(3, kNow - 30, 4)});
  ASSERT_GT(RollUpAll(), 0u);
  auto series = db_->Transact("test", [&](Tx& tx) {
    return store_.MergeSeries(tx, "classifier", "1", std::nullopt, FromUnixSeconds(kNow - 300),
                              FromUnixSeconds(kNow), std::chrono::seconds(120));
  });
  ASSERT_TRUE(series.ok()) << series.status();
  ASSERT_EQ(series->size(), 3u);
  auto requests = [&](size_t i) { return MergeProfiles((*series)[i].by_profile).requests; };
  EXPECT_EQ(ToUnixSeconds((*series)[0].start), kNow - 300);
  EXPECT_EQ(requests(0), 3u);
  EXPECT_EQ(requests(1), 0u);
  EXPECT_EQ(requests(2), 4u);
  auto bad = db_->Transact("test", [&](Tx& tx) {
    return store_.MergeSeries(tx, "classifier", "1", std::nullopt, FromUnixSeconds(kNow - 300),
                              FromUnixSeconds(kNow), std::chrono::seconds(90));
  });
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RollupTest, DevicesReportingCountsDistinctDevicesOfRecentWindows) {
  Send("cam-0", 1, {Window(1, kNow - 120, 1), Window(2, kNow - 60, 1)});
  Send("cam-2", 1, {Window(1, kNow - 60, 1)});
  Send("cam-1", 1, {Window(1, kNow - 3600, 1)});  // too long ago to count
  ASSERT_GT(RollUpAll(), 0u);
  ASSERT_TRUE(job_->RefreshDevicesReporting().ok());
  const std::string text = registry_.Serialize();
  EXPECT_EQ(test::MetricValue(text, "edgefleet_telemetry_devices_reporting",
                              {{"model", "classifier"}, {"version", "1"}, {"hw", "jetson"}}),
            2.0);
  // cam-1 (no hw) reported an hour ago only: its group is not in the last five minutes.
  EXPECT_EQ(text.find("edgefleet_telemetry_devices_reporting{model=\"classifier\",version=\"1\"}"),
            std::string::npos);
  clock_.Advance(std::chrono::minutes(10));
  ASSERT_TRUE(job_->RefreshDevicesReporting().ok());
  EXPECT_EQ(test::MetricValue(registry_.Serialize(), "edgefleet_telemetry_devices_reporting",
                              {{"hw", "jetson"}}),
            0.0)
      << "a group that went quiet drops to 0";
}

TEST_F(RollupTest, AVersionThatStoppedReportingLosesItsSeriesAfterAnHour) {
  Send("cam-0", 1, {Window(1, kNow - 60, 10, 2)});  // hw jetson
  Send("cam-1", 1, {Window(1, kNow - 60, 5)});      // no hw
  ASSERT_GT(RollUpAll(), 0u);
  ASSERT_TRUE(job_->RefreshDevicesReporting().ok());
  const metrics::Labels jetson{{"model", "classifier"}, {"version", "1"}, {"hw", "jetson"}};
  ASSERT_TRUE(test::MetricValue(registry_.Serialize(), "edgefleet_inference_requests_total", jetson)
                  .has_value());
  // Only cam-1 goes on reporting; cam-0's group is quiet for 61 minutes.
  for (int minute = 1; minute <= 61; minute += 30) {
    clock_.Advance(std::chrono::minutes(30));
    Send("cam-1", 1, {Window(static_cast<uint64_t>(minute + 1), kNow + minute * 60, 1)});
    ASSERT_GT(RollUpAll(), 0u);
  }
  clock_.Advance(std::chrono::minutes(2));
  ASSERT_TRUE(job_->RunOnce().ok());
  ASSERT_TRUE(job_->RefreshDevicesReporting().ok());
  const std::string text = registry_.Serialize();
  for (const char* family :
       {"edgefleet_inference_requests_total", "edgefleet_inference_errors_total",
        "edgefleet_inference_latency_seconds_count", "edgefleet_telemetry_devices_reporting"}) {
    EXPECT_FALSE(test::MetricValue(text, family, {{"hw", "jetson"}}).has_value())
        << family << " of the quiet group is still exported";
  }
  EXPECT_NE(text.find("edgefleet_inference_requests_total{model=\"classifier\",version=\"1\"}"),
            std::string::npos)
      << "the group still reporting keeps its series\n"
      << text;
}

TEST_F(RollupTest, RetentionDeletesOldRollups) {
  Send("cam-0", 1, {Window(1, kNow - 20 * 24 * 3600, 1), Window(2, kNow - 60, 1)});
  ASSERT_GT(RollUpAll(), 0u);
  EXPECT_EQ(Query("SELECT count(*) FROM telemetry_rollups"), "2");
  clock_.Advance(std::chrono::hours(15 * 24));
  ASSERT_TRUE(job_->Maintain().ok());
  EXPECT_EQ(Query("SELECT count(*) FROM telemetry_rollups"), "1");
}

TEST_F(RollupTest, MetricsCountWhatTheJobMergedWithoutADeviceLabelAndPassPromtool) {
  Send("cam-0", 1, {Window(1, kNow - 60, 10, 3, {0.0004, 0.002, 0.002, 0.03, 0.03, 0.2, 20})});
  Send("cam-1", 1, {Window(1, kNow - 60, 5)});
  ASSERT_GT(RollUpAll(), 0u);
  ASSERT_TRUE(job_->RefreshDevicesReporting().ok());
  const std::string text = registry_.Serialize();
  using test::MetricValue;
  EXPECT_EQ(MetricValue(text, "edgefleet_inference_requests_total",
                        {{"model", "classifier"}, {"version", "1"}, {"hw", "jetson"}}),
            10.0);
  EXPECT_EQ(MetricValue(text, "edgefleet_inference_requests_total"), 15.0);
  EXPECT_EQ(MetricValue(text, "edgefleet_inference_errors_total", {{"reason", "invalid_input"}}),
            3.0);
  EXPECT_EQ(MetricValue(text, "edgefleet_inference_latency_seconds_count", {{"hw", "jetson"}}),
            7.0);
  EXPECT_EQ(MetricValue(text, "edgefleet_inference_latency_seconds_bucket",
                        {{"hw", "jetson"}, {"le", "0.0025"}}),
            3.0);
  EXPECT_EQ(MetricValue(text, "edgefleet_inference_latency_seconds_bucket",
                        {{"hw", "jetson"}, {"le", "10"}}),
            6.0);
  EXPECT_EQ(MetricValue(text, "edgefleet_inference_latency_seconds_bucket",
                        {{"hw", "jetson"}, {"le", "+Inf"}}),
            7.0);
  EXPECT_EQ(text.find("device="), std::string::npos) << "no device label";
  EXPECT_EQ(text.find("device_id="), std::string::npos) << "no device label";
  // Counters only grow: a second batch adds to them.
  Send("cam-0", 1, {Window(2, kNow - 30, 4)});
  ASSERT_GT(RollUpAll(), 0u);
  EXPECT_EQ(MetricValue(registry_.Serialize(), "edgefleet_inference_requests_total"), 19.0);

  const char* promtool = "/usr/bin/promtool";
  if (!std::filesystem::exists(promtool)) GTEST_SKIP() << "promtool not installed";
  const auto dir = std::filesystem::temp_directory_path() /
                   ("rollup_metrics_" + std::to_string(::getpid()) + "_" + pg_.name());
  std::filesystem::create_directories(dir);
  { std::ofstream(dir / "metrics.txt") << registry_.Serialize(); }
  const std::string cmd = std::string(promtool) + " check metrics < " +
                          (dir / "metrics.txt").string() + " > " + (dir / "log").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream log(dir / "log");
  std::string out((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << out;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace edgefleet::server::telemetry
