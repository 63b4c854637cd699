// RolloutRepo::NamesToEvaluate on PostgreSQL: a pass evaluates the pending and running rollouts
// plus, for devices that became active or changed labels, the newest succeeded rollout per model
// and selector they match; the finished history is not evaluated again.
#include "server/store/rollout_repo.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/rollout/wave_plan.h"
#include "server/store/device_repo.h"
#include "server/store/model_repo.h"
#include "tests/server/store/store_test_util.h"

namespace edgefleet::server {
namespace {

constexpr int64_t kNow = 1'800'000'000;
constexpr int kFinished = 40;

class RolloutRepoTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    if (!HasFatalFailure()) Seed();
  }

  // Two devices and the version the rollouts deliver.
  void Seed() {
    devices_ = std::make_unique<DeviceRepo>(*db_);
    Enroll("cam-1", {{"site", "berlin"}});
    Enroll("gw-1", {{"site", "rome"}});
    v1::ModelVersion mv;
    mv.set_model_name("detector");
    mv.set_version("2.0");
    mv.set_format(v1::MODEL_FORMAT_ONNX);
    mv.set_artifact_sha256(Digest('b'));
    mv.set_size_bytes(10);
    mv.set_metadata_version(1);
    ModelRepo models(*db_);
    ASSERT_TRUE(
        db_->Transact("test",
                      [&](Tx& tx) { return models.InsertVersion(tx, mv, "manifest", "sig", "k1"); })
            .ok());
  }

  void Enroll(const std::string& id, const Labels& labels) {
    ASSERT_TRUE(
        db_->Transact("test",
                      [&](Tx& tx) { return devices_->Enroll(tx, id, labels, {}, id, kNow); })
            .ok());
  }

  void AddRollout(const std::string& name, const std::string& selector, v1::RolloutState state) {
    rollout::RolloutDefinition definition;
    definition.name = name;
    definition.model_name = "detector";
    definition.version = "2.0";
    definition.label_selector = selector;
    definition.plan = rollout::SingleWavePlan();
    absl::Status s = db_->Transact("test", [&](Tx& tx) -> absl::Status {
      auto stored = repo_.Insert(tx, rollout::NewRollout(definition), "alice", kNow);
      if (!stored.ok()) return stored.status();
      rollout::RolloutProgress progress = stored->progress;
      progress.state = state;
      return repo_.SaveProgress(tx, name, progress, 0, kNow);
    });
    ASSERT_TRUE(s.ok()) << s;
  }

  RolloutsToEvaluate Work() {
    auto work = db_->Transact("test", [&](Tx& tx) { return repo_.NamesToEvaluate(tx, 1000); });
    EXPECT_TRUE(work.ok()) << work.status();
    return work.ok() ? *work : RolloutsToEvaluate{};
  }

  // The names of one pass; its queued devices are then forgotten, as the controller does.
  std::vector<std::string> Pass() {
    RolloutsToEvaluate work = Work();
    EXPECT_TRUE(
        db_->Transact("test", [&](Tx& tx) { return repo_.ForgetPlacements(tx, work.placements); })
            .ok());
    return work.names;
  }

  RolloutRepo repo_;
  std::unique_ptr<DeviceRepo> devices_;
};

TEST_F(RolloutRepoTest, FinishedRolloutsAreEvaluatedOnlyForDevicesThatAppearOrChange) {
  for (int i = 0; i < kFinished; ++i) {
    AddRollout("old-" + std::to_string(100 + i), "", v1::ROLLOUT_STATE_SUCCEEDED);
  }
  AddRollout("berlin", "site=berlin", v1::ROLLOUT_STATE_SUCCEEDED);
  AddRollout("paris", "site=paris", v1::ROLLOUT_STATE_SUCCEEDED);
  // Newer than every succeeded one with its selector, but it assigns nobody any more.
  AddRollout("stopped", "", v1::ROLLOUT_STATE_ABORTED);
  AddRollout("waiting", "site=nowhere", v1::ROLLOUT_STATE_PENDING);
  AddRollout("running", "site=paris", v1::ROLLOUT_STATE_RUNNING);

  // The devices enrolled before: the newest succeeded rollout per selector they match.
  RolloutsToEvaluate first = Work();
  EXPECT_EQ(first.placements.size(), 2u);
  EXPECT_EQ(first.names, (std::vector<std::string>{"berlin", "old-139", "running", "waiting"}));
  EXPECT_EQ(Pass(), first.names) << "until forgotten, the same work";

  // Nothing changed: only the rollouts still at work, however long the history.
  RolloutsToEvaluate idle = Work();
  EXPECT_EQ(idle.names, (std::vector<std::string>{"running", "waiting"}));
  EXPECT_TRUE(idle.placements.empty());

  // A new device, and a device relabelled into another selector.
  Enroll("cam-2", {{"site", "berlin"}});
  EXPECT_EQ(Pass(), (std::vector<std::string>{"berlin", "old-139", "running", "waiting"}));
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return devices_->UpdateLabels(tx, "gw-1", {{"site", "paris"}}, {});
                            })
                  .ok());
  EXPECT_EQ(Pass(), (std::vector<std::string>{"old-139", "paris", "running", "waiting"}));

  // Writing the same labels again, or decommissioning, places nobody.
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return devices_->UpdateLabels(tx, "gw-1", {{"site", "paris"}}, {});
                            })
                  .ok());
  ASSERT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return devices_->Decommission(tx, "cam-1"); }).ok());
  EXPECT_EQ(Pass(), (std::vector<std::string>{"running", "waiting"}));
}

TEST_F(RolloutRepoTest, PlacementsArePassedOnInBoundedBatchesOldestFirst) {
  AddRollout("all", "", v1::ROLLOUT_STATE_SUCCEEDED);
  for (int i = 0; i < 5; ++i) Enroll("late-" + std::to_string(i), {});
  auto work = db_->Transact("test", [&](Tx& tx) { return repo_.NamesToEvaluate(tx, 3); });
  ASSERT_TRUE(work.ok()) << work.status();
  ASSERT_EQ(work->placements.size(), 3u);
  EXPECT_LT(work->placements[0], work->placements[1]);
  ASSERT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return repo_.ForgetPlacements(tx, work->placements); })
          .ok());
  EXPECT_EQ(Work().placements.size(), 4u) << "7 queued (2 in SetUp, 5 late), 3 forgotten";
}

}  // namespace
}  // namespace edgefleet::server

namespace edgefleet::server {
namespace {

// inventory_models (migration 0007), the one reading of a device's inventory in SQL.
TEST_F(StoreTest, InventoryModelsReadsTheModelsArrayAndDecodesDigests) {
  EXPECT_EQ(
      pg_.QueryValue("SELECT string_agg(model_name || '/' || version || '/' || state || '/' || "
                     "coalesce(encode(artifact_sha256, 'hex'), '-'), ',') FROM inventory_models("
                     "'{\"models\": [{\"model_name\": \"d\", \"version\": \"1\", \"state\": "
                     "\"MODEL_STATE_SERVING\", \"artifact_sha256\": \"q80=\"}, {\"model_name\": "
                     "\"e\", \"version\": \"2\", \"state\": \"MODEL_STATE_STAGED\"}]}')"),
      "d/1/MODEL_STATE_SERVING/abcd,e/2/MODEL_STATE_STAGED/-");
  for (const char* inventory : {"{}", "{\"models\": {\"a\": 1}}", "{\"models\": \"x\"}", "null"}) {
    EXPECT_EQ(
        pg_.QueryValue(std::string("SELECT count(*) FROM inventory_models('") + inventory + "')"),
        "0")
        << inventory;
  }
}

}  // namespace
}  // namespace edgefleet::server
