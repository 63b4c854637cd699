// Update events and telemetry from agents.
#include <gtest/gtest.h>

#include "server/store/device_repo.h"
#include "server/store/event_repo.h"
#include "server/store/telemetry_repo.h"
#include "tests/server/store/store_test_util.h"

namespace edgefleet::server {
namespace {

constexpr int64_t kNow = 1'800'000'000;

v1::UpdateEvent Event(v1::UpdateEventKind kind, v1::FailureReason reason, int64_t at) {
  v1::UpdateEvent e;
  e.set_model_name("detector");
  e.set_version("2.0");
  e.set_kind(kind);
  e.set_reason(reason);
  e.set_detail(reason == v1::FAILURE_REASON_UNSPECIFIED ? "" : "sha256 differs");
  e.mutable_occurred_at()->set_seconds(at);
  return e;
}

TEST_F(StoreTest, UpdateEventsAreListedNewestFirst) {
  DeviceRepo devices(*db_);
  ASSERT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return devices.Enroll(tx, "cam-1", {}, {}, "1", kNow); })
          .ok());
  EventRepo events(*db_);
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return events.Insert(tx, "cam-1",
                                                   Event(v1::UPDATE_EVENT_KIND_DOWNLOAD_STARTED,
                                                         v1::FAILURE_REASON_UNSPECIFIED, kNow + 1),
                                                   kNow + 5);
                            })
                  .ok());
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return events.Insert(tx, "cam-1",
                                                   Event(v1::UPDATE_EVENT_KIND_FAILED,
                                                         v1::FAILURE_REASON_DIGEST, kNow + 2),
                                                   kNow + 5);
                            })
                  .ok());
  v1::UpdateEvent undated =
      Event(v1::UPDATE_EVENT_KIND_DOWNLOADED, v1::FAILURE_REASON_UNSPECIFIED, 0);
  undated.clear_occurred_at();
  ASSERT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return events.Insert(tx, "cam-1", undated, kNow + 7); })
          .ok());

  auto listed = events.ListForDevice("cam-1", 2);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].kind(), v1::UPDATE_EVENT_KIND_DOWNLOADED);
  EXPECT_EQ((*listed)[0].occurred_at().seconds(), kNow + 7);
  EXPECT_EQ((*listed)[1].kind(), v1::UPDATE_EVENT_KIND_FAILED);
  EXPECT_EQ((*listed)[1].reason(), v1::FAILURE_REASON_DIGEST);
  EXPECT_EQ((*listed)[1].detail(), "sha256 differs");
  EXPECT_EQ((*listed)[1].occurred_at().seconds(), kNow + 2);
  EXPECT_EQ(pg_.QueryValue("SELECT kind || '/' || reason FROM device_events WHERE kind = 'failed'"),
            "failed/digest");

  EXPECT_EQ(db_->Transact("test",
                          [&](Tx& tx) {
                            return events.Insert(tx, "ghost",
                                                 Event(v1::UPDATE_EVENT_KIND_ACTIVATED,
                                                       v1::FAILURE_REASON_UNSPECIFIED, kNow),
                                                 kNow);
                          })
                .code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StoreTest, AReportsEventsAreStoredInOneGoInTheirOrderWithTheirTextIntact) {
  DeviceRepo devices(*db_);
  ASSERT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return devices.Enroll(tx, "cam-1", {}, {}, "1", kNow); })
          .ok());
  EventRepo events(*db_);
  // Details are device text: quotes, backslashes, braces, commas and the word NULL must arrive
  // as sent (the events travel as PostgreSQL array literals).
  const std::vector<std::string> details = {"", R"(said "a,b" {c} \d\)", "NULL", "ok"};
  std::vector<v1::UpdateEvent> report;
  for (size_t i = 0; i < details.size(); ++i) {
    v1::UpdateEvent& e =
        report.emplace_back(Event(v1::UPDATE_EVENT_KIND_DOWNLOAD_STARTED,
                                  v1::FAILURE_REASON_UNSPECIFIED, kNow + static_cast<int64_t>(i)));
    e.set_detail(details[i]);
  }
  report[2].set_kind(v1::UPDATE_EVENT_KIND_FAILED);
  report[2].set_reason(v1::FAILURE_REASON_DIGEST);
  report[3].clear_occurred_at();
  std::vector<const v1::UpdateEvent*> pointers;
  for (const auto& e : report) pointers.push_back(&e);
  ASSERT_TRUE(
      db_->Transact("test",
                    [&](Tx& tx) { return events.InsertAll(tx, "cam-1", pointers, kNow + 9); })
          .ok());

  auto listed = events.ListForDevice("cam-1", 10);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), report.size());
  for (size_t i = 0; i < report.size(); ++i) {
    const v1::UpdateEvent& got = (*listed)[report.size() - 1 - i];  // newest first
    EXPECT_EQ(got.detail(), details[i]) << i;
    EXPECT_EQ(got.kind(), report[i].kind()) << i;
    EXPECT_EQ(got.reason(), report[i].reason()) << i;
  }
  EXPECT_EQ((*listed)[1].occurred_at().seconds(), kNow + 2);
  EXPECT_EQ((*listed)[0].occurred_at().seconds(), kNow + 9);  // undated: when it was received
}

TEST_F(StoreTest, TelemetryWindowsAreStored) {
  DeviceRepo devices(*db_);
  ASSERT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return devices.Enroll(tx, "cam-1", {}, {}, "1", kNow); })
          .ok());
  TelemetryRepo telemetry;
  v1::ModelTelemetry t;
  t.set_model_name("detector");
  t.set_version("2.0");
  t.set_inference_count(1200);
  t.set_error_count(3);
  t.mutable_latency()->set_p50_seconds(0.012);
  t.mutable_latency()->set_p99_seconds(0.25);
  t.mutable_latency()->set_sum_seconds(18.5);
  t.mutable_window_start()->set_seconds(kNow - 60);
  t.mutable_window_end()->set_seconds(kNow);
  ASSERT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return telemetry.Insert(tx, "cam-1", t, kNow + 1); })
          .ok());

  EXPECT_EQ(
      pg_.QueryValue("SELECT inference_count || '/' || error_count || '/' || "
                     "latency_p99_seconds || '/' || latency_sum_seconds FROM model_telemetry"),
      "1200/3/0.25/18.5");
  EXPECT_EQ(pg_.QueryValue("SELECT extract(epoch FROM window_end - window_start)::int FROM "
                           "model_telemetry"),
            "60");
  EXPECT_EQ(
      db_->Transact("test", [&](Tx& tx) { return telemetry.Insert(tx, "ghost", t, kNow); }).code(),
      absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace edgefleet::server
