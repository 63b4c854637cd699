// Telemetry ingest on PostgreSQL: each window stored exactly once however often it is sent,
// refusals that name the reason and store nothing, daily partitions made on demand and dropped
// after the retention.
#include "server/telemetry/ingest.h"

#include <gtest/gtest.h>

#include "common/crypto/sha256.h"
#include "common/metrics/metrics.h"
#include "server/store/deployment_repo.h"
#include "server/store/device_repo.h"
#include "server/store/model_repo.h"
#include "tests/server/store/store_test_util.h"
#include "tests/support/fleet_harness.h"

namespace edgefleet::server::telemetry {
namespace {

constexpr int64_t kNow = 1'800'000'000;  // 2027-01-15T08:00:00Z

class IngestTest : public StoreTest {
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
    ASSERT_TRUE(
        db_->Transact(
               "test",
               [&](Tx& tx) {
                 return devices_->Enroll(tx, "cam-1", {{"hw", "jetson"}}, inventory, "01", kNow);
               })
            .ok());
    ASSERT_TRUE(
        db_->Transact("test",
                      [&](Tx& tx) { return devices_->Enroll(tx, "cam-2", {}, {}, "02", kNow); })
            .ok());
    PublishVersion(*db_, *models_, "classifier", "1", 'a');
    PublishVersion(*db_, *models_, "detector", "1", 'b');
    ingest_ = std::make_unique<TelemetryIngest>(*db_, repo_, clock_, metrics_);
  }

  static v1::TelemetryWindow Window(uint64_t sequence, int64_t end_unix, uint64_t requests = 5) {
    v1::TelemetryWindow w;
    w.set_sequence(sequence);
    w.set_model_name("classifier");
    w.set_version("1");
    w.mutable_window_start()->set_seconds(end_unix - 60);
    w.mutable_window_end()->set_seconds(end_unix);
    w.set_request_count(requests);
    return w;
  }

  std::string Count(const std::string& where = "true") {
    return pg_.QueryValue("SELECT count(*) FROM telemetry_windows WHERE " + where);
  }

  double Metric(const std::string& result) {
    return test::MetricValue(registry_.Serialize(), "edgefleet_telemetry_windows_total",
                             {{"result", result}})
        .value_or(0);
  }

  FakeClock clock_;
  metrics::Registry registry_;
  ServerMetrics metrics_{registry_};
  TelemetryRepo repo_;
  std::unique_ptr<DeviceRepo> devices_;
  std::unique_ptr<ModelRepo> models_;
  std::unique_ptr<TelemetryIngest> ingest_;
};

TEST_F(IngestTest, EachWindowIsStoredOnceHoweverOftenItIsSent) {
  v1::UploadTelemetryRequest request;
  request.set_stream_id(42);
  for (uint64_t s = 1; s <= 3; ++s)
    *request.add_windows() = Window(s, kNow - 60 * (3 - static_cast<int64_t>(s)));
  auto first = ingest_->Ingest("cam-1", request);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->accepted_sequences_size(), 3);
  EXPECT_EQ(first->rejected_size(), 0);
  // The answer was lost: the agent sends the same windows again, and one more.
  *request.add_windows() = Window(4, kNow);
  auto again = ingest_->Ingest("cam-1", request);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->accepted_sequences_size(), 4) << "duplicates are accepted, so they are acked";
  EXPECT_EQ(Count(), "4");
  EXPECT_EQ(Count("device_id = 'cam-1' AND stream_id = 42 AND hw = 'jetson'"), "4");
  EXPECT_EQ(Count("request_count = 5 AND error_count = 0"), "4");
  EXPECT_EQ(Metric("stored"), 4);
  EXPECT_EQ(Metric("duplicate"), 3);
  // The same sequence from a wiped device (a new stream) is a new window.
  request.set_stream_id(43);
  ASSERT_TRUE(ingest_->Ingest("cam-1", request).ok());
  EXPECT_EQ(Count(), "8");
}

TEST_F(IngestTest, ACopyInTheSameUploadIsStoredOnceAndWhatIsStoredIsWhatWasSent) {
  v1::UploadTelemetryRequest request;
  request.set_stream_id(7);
  v1::TelemetryWindow w = Window(1, kNow);
  w.mutable_window_start()->set_nanos(250'000'000);
  w.add_errors()->set_reason(v1::PREDICT_ERROR_REASON_OVERLOADED);
  w.mutable_errors(0)->set_count(2);
  v1::FeatureWindow* feature = w.add_features();
  feature->add_bins(3);
  feature->add_bins(2);
  feature->set_sum(1.5);
  *request.add_windows() = w;
  *request.add_windows() = w;  // the agent's retry queued behind the first copy
  *request.add_windows() = Window(2, kNow);
  auto answer = ingest_->Ingest("cam-1", request);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->accepted_sequences_size(), 3);
  EXPECT_EQ(Count(), "2");
  EXPECT_EQ(Metric("stored"), 2);
  EXPECT_EQ(Metric("duplicate"), 1);
  EXPECT_EQ(pg_.QueryValue("SELECT extract(epoch FROM window_start)::numeric(20,3) || ' ' || "
                           "error_count FROM telemetry_windows WHERE sequence = 1"),
            std::to_string(kNow - 60) + ".250 2");
  v1::TelemetryWindow stored;
  ASSERT_TRUE(stored.ParseFromString(
      crypto::FromHex(
          pg_.QueryValue("SELECT encode(summary, 'hex') FROM telemetry_windows WHERE sequence = 1"))
          .value()));
  EXPECT_EQ(stored.SerializeAsString(), w.SerializeAsString());
}

TEST_F(IngestTest, RefusedWindowsAreListedWithTheirReasonAndNothingOfThemIsStored) {
  v1::UploadTelemetryRequest request;
  request.set_stream_id(1);
  *request.add_windows() = Window(1, kNow);
  *request.add_windows() = Window(2, kNow + 3600);  // from the future
  v1::TelemetryWindow detector = Window(3, kNow);
  detector.set_model_name("detector");  // published, but cam-1 does not run it
  *request.add_windows() = detector;
  v1::TelemetryWindow unknown_version = Window(4, kNow);
  unknown_version.set_version("9");
  *request.add_windows() = unknown_version;
  v1::TelemetryWindow malformed = Window(5, kNow);
  malformed.add_errors()->set_reason(v1::PREDICT_ERROR_REASON_OVERLOADED);
  malformed.mutable_errors(0)->set_count(99);
  *request.add_windows() = malformed;
  auto answer = ingest_->Ingest("cam-1", request);
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->accepted_sequences_size(), 1);
  EXPECT_EQ(answer->accepted_sequences(0), 1u);
  std::map<uint64_t, std::string> rejected;
  for (const auto& r : answer->rejected()) rejected[r.sequence()] = r.reason();
  ASSERT_EQ(rejected.size(), 4u);
  EXPECT_NE(rejected[2].find("future"), std::string::npos) << rejected[2];
  EXPECT_NE(rejected[3].find("does not run model 'detector'"), std::string::npos) << rejected[3];
  EXPECT_NE(rejected[4].find("no version '9'"), std::string::npos) << rejected[4];
  EXPECT_NE(rejected[5].find("more errors than requests"), std::string::npos) << rejected[5];
  EXPECT_EQ(Count(), "1");
  EXPECT_EQ(Metric("future"), 1);
  EXPECT_EQ(Metric("unknown_model"), 2);
  EXPECT_EQ(Metric("malformed"), 1);
}

TEST_F(IngestTest, AnUploadWithoutAStreamIsInvalidAndAnUnknownDeviceIsNotFound) {
  v1::UploadTelemetryRequest request;
  *request.add_windows() = Window(1, kNow);
  EXPECT_EQ(ingest_->Ingest("cam-1", request).status().code(), absl::StatusCode::kInvalidArgument);
  request.set_stream_id(1);
  EXPECT_EQ(ingest_->Ingest("ghost", request).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Count(), "0");
}

v1::DroppedTelemetryWindows Dropped(uint64_t outbox_full, uint64_t refused) {
  v1::DroppedTelemetryWindows d;
  d.set_outbox_full(outbox_full);
  d.set_refused(refused);
  return d;
}

TEST(AdvanceDropsTest, CumulativeCountsBecomeIncrementsAndAWipedAgentStartsFromZero) {
  TelemetryStore::DropRecord last{
      .stream_id = 7, .reported = {.outbox_full = 10, .refused = 2}, .total = {30, 4}};
  DropUpdate same = AdvanceDrops(last, 7, Dropped(10, 2));
  EXPECT_EQ(same.increment.outbox_full, 0u);
  EXPECT_EQ(same.increment.refused, 0u);
  EXPECT_EQ(same.record.total.outbox_full, 30u);
  DropUpdate more = AdvanceDrops(last, 7, Dropped(15, 3));
  EXPECT_EQ(more.increment.outbox_full, 5u);
  EXPECT_EQ(more.increment.refused, 1u);
  EXPECT_EQ(more.record.total.outbox_full, 35u);
  EXPECT_EQ(more.record.total.refused, 5u);
  EXPECT_EQ(more.record.reported.outbox_full, 15u);
  // Lower than before on the same stream: the counts restarted, all of it is new (no negative).
  DropUpdate lower = AdvanceDrops(last, 7, Dropped(4, 0));
  EXPECT_EQ(lower.increment.outbox_full, 4u);
  EXPECT_EQ(lower.increment.refused, 0u);
  EXPECT_EQ(lower.record.total.outbox_full, 34u);
  // A new stream (a wiped agent) counts from zero even when its count is higher.
  DropUpdate wiped = AdvanceDrops(last, 8, Dropped(12, 2));
  EXPECT_EQ(wiped.increment.outbox_full, 12u);
  EXPECT_EQ(wiped.increment.refused, 2u);
  EXPECT_EQ(wiped.record.stream_id, 8u);
}

TEST_F(IngestTest, DropCountsAreCountedOnceAcrossRepeatsAndRestartsAndShownOnTheDevice) {
  auto dropped = [&](const std::string& reason) {
    return test::MetricValue(registry_.Serialize(), "edgefleet_telemetry_windows_dropped_total",
                             {{"reason", reason}})
        .value_or(-1);
  };
  v1::UploadTelemetryRequest request;
  request.set_stream_id(42);
  *request.add_windows() = Window(1, kNow);
  *request.mutable_dropped_windows() = Dropped(6, 1);
  ASSERT_TRUE(ingest_->Ingest("cam-1", request).ok());
  EXPECT_EQ(dropped("outbox_full"), 6);
  EXPECT_EQ(dropped("refused"), 1);
  // The same upload again (its answer was lost), then one without windows: nothing new.
  ASSERT_TRUE(ingest_->Ingest("cam-1", request).ok());
  request.clear_windows();
  ASSERT_TRUE(ingest_->Ingest("cam-1", request).ok());
  EXPECT_EQ(dropped("outbox_full"), 6);
  *request.mutable_dropped_windows() = Dropped(9, 1);
  ASSERT_TRUE(ingest_->Ingest("cam-1", request).ok());
  EXPECT_EQ(dropped("outbox_full"), 9);
  // The agent's state was wiped: a new stream, counting again from zero.
  request.set_stream_id(43);
  *request.mutable_dropped_windows() = Dropped(2, 0);
  ASSERT_TRUE(ingest_->Ingest("cam-1", request).ok());
  EXPECT_EQ(dropped("outbox_full"), 11);
  EXPECT_EQ(dropped("refused"), 1);
  EXPECT_EQ(pg_.QueryValue("SELECT total_outbox_full || '/' || total_refused || '/' || "
                           "reported_outbox_full FROM telemetry_drops WHERE device_id = 'cam-1'"),
            "11/1/2");

  auto device = devices_->Get("cam-1");
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ(device->telemetry_dropped().outbox_full(), 11u);
  EXPECT_EQ(device->telemetry_dropped().refused(), 1u);
  auto quiet = devices_->Get("cam-2");
  ASSERT_TRUE(quiet.ok());
  EXPECT_FALSE(quiet->has_telemetry_dropped()) << "never reported a drop";
  // Drops from an unknown device store nothing.
  EXPECT_EQ(ingest_->Ingest("ghost", request).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(IngestTest, PartitionsAreMadeOnDemandAndDroppedAfterTheRetention) {
  auto partitions = [&] {
    return pg_.QueryValue(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = 'telemetry_windows'");
  };
  EXPECT_EQ(partitions(), "0");
  // No maintenance has run: the upload creates its day's partition itself.
  v1::UploadTelemetryRequest request;
  request.set_stream_id(1);
  *request.add_windows() = Window(1, kNow - 10 * 24 * 3600);
  auto answer = ingest_->Ingest("cam-1", request);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->accepted_sequences_size(), 1);
  EXPECT_EQ(partitions(), "1");
  ASSERT_TRUE(ingest_->Maintain().ok());
  EXPECT_EQ(partitions(), "32") << "30 days back, today and tomorrow";
  ASSERT_TRUE(ingest_->Maintain().ok());
  EXPECT_EQ(partitions(), "32") << "idempotent";
  // 25 days later the window's day (35 days old) has left the retention with its partition.
  clock_.Advance(std::chrono::hours(25 * 24));
  ASSERT_TRUE(ingest_->Maintain().ok());
  EXPECT_EQ(partitions(), "32");
  EXPECT_EQ(Count(), "0") << "dropped with its partition";
}

}  // namespace
}  // namespace edgefleet::server::telemetry
