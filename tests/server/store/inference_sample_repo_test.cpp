// InferenceSampleRepo on PostgreSQL: a wave's canaries are its targets serving the version (not
// rolled back, not of another wave), and a sample merges exactly the windows of the version that
// the given devices sent and that started in the range, across daily partitions.
#include "server/store/inference_sample_repo.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/telemetry/telemetry_codec.h"
#include "server/rollout/wave_plan.h"
#include "server/store/device_repo.h"
#include "server/store/rollout_repo.h"
#include "server/store/telemetry_repo.h"
#include "tests/server/store/store_test_util.h"

namespace edgefleet::server {
namespace {

constexpr int64_t kNow = 1'800'000'000;
constexpr int64_t kDay = 86'400;

class InferenceSampleRepoTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    if (HasFatalFailure()) return;
    DeviceRepo devices(*db_);
    for (const char* id : {"a", "b", "c", "d"}) {
      ASSERT_TRUE(
          db_->Transact("test", [&](Tx& tx) { return devices.Enroll(tx, id, {}, {}, id, kNow); })
              .ok());
    }
    ModelRepo models(*db_);
    PublishVersion(*db_, models, "detector", "2.0", 'b');
    auto parts = db_->Transact(
        "test", [&](Tx& tx) { return telemetry_.EnsurePartitions(tx, kNow - kDay, kNow + kDay); });
    ASSERT_TRUE(parts.ok()) << parts.status();
  }

  // A window of `version` from `device` starting at `start`: `requests` answered in `seconds`
  // (`errors` of them failed), all in output class `bin` of 3.
  void Window(const std::string& device, const std::string& version, int64_t start,
              uint64_t requests, uint64_t errors = 0, double seconds = 0.002, int bin = 0,
              const std::string& model = "detector") {
    v1::TelemetryWindow w;
    w.set_sequence(++sequence_);
    w.set_model_name(model);
    w.set_version(version);
    w.mutable_window_start()->set_seconds(start);
    w.mutable_window_end()->set_seconds(start + 60);
    w.set_request_count(requests);
    if (errors > 0) {
      auto* e = w.add_errors();
      e->set_reason(v1::PREDICT_ERROR_REASON_INFERENCE_FAILED);
      e->set_count(errors);
    }
    telemetry::LatencySketch sketch;
    sketch.AddCount(seconds, requests - errors);
    *w.mutable_latency() = telemetry::ToProto(sketch);
    for (int i = 0; i < 3; ++i) w.mutable_outputs()->add_bins(i == bin ? requests - errors : 0);
    auto stored = db_->Transact(
        "test", [&](Tx& tx) { return telemetry_.InsertWindow(tx, device, 1, w, "", kNow); });
    ASSERT_TRUE(stored.ok()) << stored.status();
  }

  rollout::InferenceSide Sample(const std::string& version, const std::vector<std::string>& ids,
                                int64_t from, int64_t to) {
    auto side = db_->Transact(
        "test", [&](Tx& tx) { return repo_.Sample(tx, "detector", version, ids, from, to); });
    EXPECT_TRUE(side.ok()) << side.status();
    return side.ok() ? *std::move(side) : rollout::InferenceSide{};
  }

  TelemetryRepo telemetry_;
  InferenceSampleRepo repo_;
  uint64_t sequence_ = 0;
};

TEST_F(InferenceSampleRepoTest, ASampleMergesTheVersionsWindowsOfTheDevicesInTheRange) {
  Window("a", "2.0", kNow, 100, 2, 0.002, 1);
  Window("a", "2.0", kNow + 60, 50, 0, 0.004, 2);
  Window("b", "2.0", kNow - kDay + 10, 30);                 // yesterday's partition, in range
  Window("b", "2.0", kNow - kDay - 10, 1000);               // before the range
  Window("c", "2.0", kNow + 120, 1000);                     // not asked for
  Window("a", "1.0", kNow + 120, 1000);                     // another version
  Window("a", "2.0", kNow + 600, 1000);                     // at the end of the range: excluded
  Window("b", "2.0", kNow + 180, 7, 0, 0.002, 0, "other");  // another model

  const rollout::InferenceSide side = Sample("2.0", {"a", "b", "d"}, kNow - kDay, kNow + 600);
  EXPECT_EQ(side.inferences, 180u);
  EXPECT_EQ(side.errors, 2u);
  EXPECT_EQ(side.devices, 2u);
  EXPECT_EQ(side.latency.count(), 178u);
  EXPECT_EQ(side.first_window_start_unix, kNow - kDay + 10);
  ASSERT_EQ(side.outputs.size(), 1u);
  EXPECT_EQ(side.outputs.begin()->second, (std::vector<uint64_t>{30, 98, 50}));

  EXPECT_EQ(Sample("2.0", {}, kNow - kDay, kNow + 600).inferences, 0u) << "no device: no query";
  EXPECT_EQ(Sample("2.0", {"a"}, kNow + 600, kNow + 600).inferences, 0u) << "an empty range";
  EXPECT_EQ(Sample("2.0", {"a"}, kNow + 600, kNow + 601).inferences, 1000u);
}

TEST_F(InferenceSampleRepoTest, TheCanariesAreTheWavesTargetsServingTheVersion) {
  RolloutRepo rollouts;
  rollout::RolloutDefinition definition;
  definition.name = "r1";
  definition.model_name = "detector";
  definition.version = "2.0";
  v1::WaveSpec half;
  half.set_percent(50);
  v1::WaveSpec all;
  all.set_percent(100);
  definition.plan = *rollout::NormalizeWaves({half, all});
  int64_t deployment = 0;
  ASSERT_TRUE(
      db_->Transact(
             "test",
             [&](Tx& tx) -> absl::Status {
               auto stored = rollouts.Insert(tx, rollout::NewRollout(definition), "t", kNow);
               if (!stored.ok()) return stored.status();
               deployment = stored->deployment_id;
               if (auto s = rollouts.Assign(tx, deployment, 0, {"a", "b", "c"}, kNow); !s.ok())
                 return s;
               return rollouts.Assign(tx, deployment, 1, {"d"}, kNow);
             })
          .ok());
  const std::string id = std::to_string(deployment);
  pg_.Exec("UPDATE deployment_targets SET state = 'serving' WHERE deployment_id = " + id);
  pg_.Exec("UPDATE deployment_targets SET previous_version = '1.0' WHERE device_id IN ('a', 'd')");
  pg_.Exec("UPDATE deployment_targets SET state = 'in_progress' WHERE device_id = 'c'");

  auto canaries =
      db_->Transact("test", [&](Tx& tx) { return repo_.WaveCanaries(tx, deployment, 0); });
  ASSERT_TRUE(canaries.ok()) << canaries.status();
  ASSERT_EQ(canaries->size(), 2u);
  EXPECT_EQ((*canaries)[0].device_id, "a");
  EXPECT_EQ((*canaries)[0].previous_version, "1.0");
  EXPECT_EQ((*canaries)[1].device_id, "b");
  EXPECT_EQ((*canaries)[1].previous_version, "") << "a first install";

  // Rolled back targets are no canaries any more.
  ASSERT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return rollouts.RollBack(tx, deployment, kNow); }).ok());
  canaries = db_->Transact("test", [&](Tx& tx) { return repo_.WaveCanaries(tx, deployment, 0); });
  ASSERT_TRUE(canaries.ok());
  EXPECT_TRUE(canaries->empty());
}

}  // namespace
}  // namespace edgefleet::server
