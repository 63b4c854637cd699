#include "server/store/deployment_repo.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <pqxx/pqxx>

#include "server/store/device_repo.h"
#include "server/store/migrations.h"
#include "server/store/model_repo.h"
#include "server/store/rollout_repo.h"
#include "tests/server/store/store_test_util.h"

namespace edgefleet::server {
namespace {

constexpr int64_t kNow = 1'800'000'000;
const PageRequest kAllTargets{"", kMaxPageSize};

class DeploymentTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    if (HasFatalFailure()) return;
    devices_ = std::make_unique<DeviceRepo>(*db_);
    models_ = std::make_unique<ModelRepo>(*db_);
    deployments_ = std::make_unique<DeploymentRepo>(*db_);
    ASSERT_TRUE(db_->Transact("test",
                              [&](Tx& tx) {
                                return devices_->Enroll(tx, "cam-1",
                                                        {{"site", "berlin"}, {"ring", "canary"}},
                                                        {}, "1", kNow);
                              })
                    .ok());
    ASSERT_TRUE(
        db_->Transact("test",
                      [&](Tx& tx) {
                        return devices_->Enroll(tx, "cam-2", {{"site", "berlin"}}, {}, "2", kNow);
                      })
            .ok());
    ASSERT_TRUE(
        db_->Transact("test",
                      [&](Tx& tx) {
                        return devices_->Enroll(tx, "gw-1", {{"site", "paris"}}, {}, "3", kNow);
                      })
            .ok());
    Publish("detector", "1.0", 'a');
    Publish("detector", "2.0", 'b');
    Publish("classifier", "0.1", 'c');
  }

  void Publish(const std::string& name, const std::string& version, char digest) {
    PublishVersion(*db_, *models_, name, version, digest);
  }

  // device id -> target state in the given deployment.
  std::map<std::string, v1::DeploymentTargetState> Targets(const std::string& id) {
    std::map<std::string, v1::DeploymentTargetState> out;
    auto d = deployments_->Get(id, kAllTargets);
    EXPECT_TRUE(d.ok()) << d.status();
    if (!d.ok()) return out;
    for (const auto& t : d->deployment.targets()) out[t.device_id()] = t.state();
    return out;
  }

  std::map<std::string, std::string> Desired(const std::string& device) {
    std::map<std::string, std::string> out;
    auto desired =
        db_->Transact("test", [&](Tx& tx) { return deployments_->DesiredForDevice(tx, device); });
    EXPECT_TRUE(desired.ok()) << desired.status();
    if (!desired.ok()) return out;
    for (const auto& v : *desired) out[v.meta.model_name()] = v.meta.version();
    return out;
  }

  std::unique_ptr<DeviceRepo> devices_;
  std::unique_ptr<ModelRepo> models_;
  std::unique_ptr<DeploymentRepo> deployments_;
};

TEST_F(DeploymentTest, CreateTargetsEveryMatchingActiveDevice) {
  ASSERT_TRUE(
      db_->Transact("test",
                    [&](Tx& tx) {
                      return devices_->Enroll(tx, "cam-3", {{"site", "berlin"}}, {}, "4", kNow);
                    })
          .ok());
  ASSERT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return devices_->Decommission(tx, "cam-3"); }).ok());

  auto d = db_->Transact("test", [&](Tx& tx) {
    return deployments_->Create(tx, "detector", "1.0", "site=berlin", {{"site", "berlin"}}, kNow);
  });
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->model_name(), "detector");
  EXPECT_EQ(d->version(), "1.0");
  EXPECT_EQ(d->label_selector(), "site=berlin");
  EXPECT_EQ(d->created_at().seconds(), kNow);
  EXPECT_EQ(Targets(d->deployment_id()), (std::map<std::string, v1::DeploymentTargetState>{
                                             {"cam-1", v1::DEPLOYMENT_TARGET_STATE_PENDING},
                                             {"cam-2", v1::DEPLOYMENT_TARGET_STATE_PENDING}}));

  absl::Status missing =
      db_->Transact(
             "test",
             [&](Tx& tx) { return deployments_->Create(tx, "detector", "9.9", "", {}, kNow); })
          .status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.message(), "model detector version 9.9 not found");
  EXPECT_EQ(deployments_->Get("12345", kAllTargets).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(deployments_->Get("not-a-number", kAllTargets).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(deployments_->ListPage({})->items.size(), 1u);
}

TEST_F(DeploymentTest, GetPagesTargetsByDeviceIdAndCountsThemAll) {
  for (int i = 0; i < 9; ++i) {
    ASSERT_TRUE(db_->Transact("test",
                              [&](Tx& tx) {
                                return devices_->Enroll(tx, "edge-" + std::to_string(i), {}, {},
                                                        "e" + std::to_string(i), kNow);
                              })
                    .ok());
  }
  auto d = db_->Transact("test", [&](Tx& tx) {
    return deployments_->Create(tx, "detector", "1.0", "", {}, kNow);
  });  // 12 devices
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->target_count(), 12u);
  EXPECT_EQ(d->target_counts().pending(), 12u);
  EXPECT_EQ(d->targets_size(), 0) << "Create answers with counts, not targets";
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return deployments_->UpdateTargetState(
                                  tx, "cam-1", "detector", "1.0",
                                  v1::DEPLOYMENT_TARGET_STATE_SERVING,
                                  v1::FAILURE_REASON_UNSPECIFIED, "", kNow + 1);
                            })
                  .ok());
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return deployments_->UpdateTargetState(
                                  tx, "gw-1", "detector", "1.0", v1::DEPLOYMENT_TARGET_STATE_FAILED,
                                  v1::FAILURE_REASON_UNSPECIFIED, "bad", kNow + 1);
                            })
                  .ok());

  std::vector<std::string> seen;
  PageRequest page{"", 5};
  int pages = 0;
  do {
    auto got = deployments_->Get(d->deployment_id(), page);
    ASSERT_TRUE(got.ok()) << got.status();
    ++pages;
    EXPECT_LE(got->deployment.targets_size(), 5);
    EXPECT_EQ(got->deployment.target_count(), 12u) << "every page carries the whole counts";
    EXPECT_EQ(got->deployment.target_counts().pending(), 10u);
    EXPECT_EQ(got->deployment.target_counts().serving(), 1u);
    EXPECT_EQ(got->deployment.target_counts().failed(), 1u);
    for (const auto& t : got->deployment.targets()) seen.push_back(t.device_id());
    page.after = got->next_target_after;
    ASSERT_LE(pages, 3);
  } while (!page.after.empty());
  EXPECT_EQ(pages, 3);
  std::vector<std::string> expected = {"cam-1", "cam-2", "gw-1"};
  for (int i = 0; i < 9; ++i) expected.push_back("edge-" + std::to_string(i));
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(seen, expected) << "each target once, ordered by device id";

  auto listed = deployments_->ListPage({});
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->items.size(), 1u);
  EXPECT_EQ(listed->items[0].targets_size(), 0) << "a listed deployment carries no targets";
  EXPECT_EQ(listed->items[0].target_count(), 12u);
  EXPECT_EQ(listed->items[0].target_counts().serving(), 1u);
}

TEST_F(DeploymentTest, DesiredStateIsTheLatestMatchingDeploymentPerModel) {
  auto fleet = db_->Transact(
      "test", [&](Tx& tx) { return deployments_->Create(tx, "detector", "1.0", "", {}, kNow); });
  ASSERT_TRUE(fleet.ok()) << fleet.status();
  auto canary = db_->Transact("test", [&](Tx& tx) {
    return deployments_->Create(tx, "detector", "2.0", "ring=canary", {{"ring", "canary"}},
                                kNow + 10);
  });
  ASSERT_TRUE(canary.ok()) << canary.status();
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return deployments_->Create(tx, "classifier", "0.1", "site=paris",
                                                          {{"site", "paris"}}, kNow + 20);
                            })
                  .ok());

  EXPECT_EQ(Desired("cam-1"), (std::map<std::string, std::string>{{"detector", "2.0"}}));
  EXPECT_EQ(Desired("cam-2"), (std::map<std::string, std::string>{{"detector", "1.0"}}));
  EXPECT_EQ(Desired("gw-1"),
            (std::map<std::string, std::string>{{"classifier", "0.1"}, {"detector", "1.0"}}));
  auto desired =
      db_->Transact("test", [&](Tx& tx) { return deployments_->DesiredForDevice(tx, "cam-1"); });
  ASSERT_TRUE(desired.ok());
  ASSERT_EQ(desired->size(), 1u);
  EXPECT_EQ((*desired)[0].signed_manifest, "manifest-2.0");
  EXPECT_EQ((*desired)[0].meta.artifact_sha256(), Digest('b'));

  // cam-1 moved to the canary deployment; its fleet-wide target is superseded.
  EXPECT_EQ(Targets(fleet->deployment_id()).at("cam-1"), v1::DEPLOYMENT_TARGET_STATE_SUPERSEDED);
  EXPECT_EQ(Targets(fleet->deployment_id()).at("cam-2"), v1::DEPLOYMENT_TARGET_STATE_PENDING);

  // Check-in is a read: a device enrolled after the deployment has no target until the rollout
  // component assigns it (the controller takes late devices into the current wave).
  ASSERT_TRUE(
      db_->Transact(
             "test",
             [&](Tx& tx) {
               return devices_->Enroll(tx, "cam-9", {{"site", "berlin"}}, {}, "9", kNow + 30);
             })
          .ok());
  EXPECT_TRUE(Desired("cam-9").empty());
  EXPECT_EQ(Targets(fleet->deployment_id()).count("cam-9"), 0u);
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return RolloutRepo().Assign(tx, std::stoll(fleet->deployment_id()), 0,
                                                          {"cam-9"}, kNow + 31);
                            })
                  .ok());
  EXPECT_EQ(Desired("cam-9"), (std::map<std::string, std::string>{{"detector", "1.0"}}));
  EXPECT_EQ(Targets(fleet->deployment_id()).at("cam-9"), v1::DEPLOYMENT_TARGET_STATE_PENDING);

  // Decommissioned devices want nothing; unknown ones are NotFound.
  ASSERT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return devices_->Decommission(tx, "cam-2"); }).ok());
  EXPECT_TRUE(Desired("cam-2").empty());
  EXPECT_EQ(
      db_->Transact("test", [&](Tx& tx) { return deployments_->DesiredForDevice(tx, "ghost"); })
          .status()
          .code(),
      absl::StatusCode::kNotFound);
}

// Each deployment is a release with its own metadata version, so deploying an older version again
// is newer metadata pointing at the old artifact (an operator's rollback, not an attack).
TEST_F(DeploymentTest, EveryDeploymentIsANewReleaseWithAHigherMetadataVersion) {
  auto first = db_->Transact(
      "test", [&](Tx& tx) { return deployments_->Create(tx, "detector", "1.0", "", {}, kNow); });
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = db_->Transact("test", [&](Tx& tx) {
    return deployments_->Create(tx, "detector", "2.0", "", {}, kNow + 1);
  });
  ASSERT_TRUE(second.ok()) << second.status();
  auto rollback = db_->Transact("test", [&](Tx& tx) {
    return deployments_->Create(tx, "detector", "1.0", "", {}, kNow + 2);
  });
  ASSERT_TRUE(rollback.ok()) << rollback.status();
  auto pushed = models_->GetVersion("detector", "2.0");
  ASSERT_TRUE(pushed.ok());
  EXPECT_GT(first->metadata_version(), pushed->meta.metadata_version())
      << "numbers come from the one counter, after every push";
  EXPECT_GT(second->metadata_version(), first->metadata_version());
  EXPECT_GT(rollback->metadata_version(), second->metadata_version());
  EXPECT_EQ(
      deployments_->Get(rollback->deployment_id(), kAllTargets)->deployment.metadata_version(),
      rollback->metadata_version());

  auto desired =
      db_->Transact("test", [&](Tx& tx) { return deployments_->DesiredForDevice(tx, "cam-1"); });
  ASSERT_TRUE(desired.ok()) << desired.status();
  ASSERT_EQ(desired->size(), 1u);
  EXPECT_EQ((*desired)[0].meta.version(), "1.0");
  EXPECT_EQ((*desired)[0].meta.artifact_sha256(), Digest('a'));
  EXPECT_EQ((*desired)[0].meta.metadata_version(), rollback->metadata_version());
}

// Applies the embedded migrations numbered below `version` to `pg`: a database as an older
// server left it.
void MigrateBefore(test::TestDatabase& pg, int version) {
  std::vector<Migration> before;
  for (const Migration& m : EmbeddedMigrations()) {
    if (m.version < version) before.push_back(m);
  }
  auto old_db = Database::Open({.url = pg.url()}, before);
  ASSERT_TRUE(old_db.ok()) << old_db.status();
  ASSERT_TRUE((*old_db)->Migrate().ok());
}

// Model 'm' version '1', as a push writes it, straight into the tables.
void PushVersionOneOfM(test::TestDatabase& pg) {
  pg.Exec("INSERT INTO models (name) VALUES ('m')");
  pg.Exec(
      "INSERT INTO model_versions (model_name, version, format, artifact_sha256, size_bytes, "
      "metadata_version, signed_manifest, signature, key_id) VALUES ('m', '1', 'onnx', "
      "decode(repeat('ab', 32), 'hex'), 1, nextval('release_metadata_version_seq'), '', '', 'k')");
}

// Deployments made before migration 0004 keep their version's number, which devices hold.
TEST(DeploymentMigrationTest, ExistingDeploymentsKeepTheirVersionsMetadataVersion) {
  test::TestDatabase pg;
  MigrateBefore(pg, 4);
  if (HasFatalFailure()) return;
  PushVersionOneOfM(pg);
  pg.Exec("INSERT INTO deployments (model_name, version) VALUES ('m', '1')");
  const std::string pushed = pg.QueryValue("SELECT metadata_version FROM model_versions");

  auto db = Database::Open({.url = pg.url()});
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE((*db)->Migrate().ok());
  EXPECT_EQ(pg.QueryValue("SELECT metadata_version FROM deployments"), pushed);
  pg.Exec("INSERT INTO deployments (model_name, version) VALUES ('m', '1')");
  EXPECT_GT(std::stoll(pg.QueryValue("SELECT max(metadata_version) FROM deployments")),
            std::stoll(pushed));
}

// Deployments made before migration 0006 become succeeded one-wave rollouts, which the
// controller reads (so devices that match later still get their version).
TEST(DeploymentMigrationTest, ExistingDeploymentsBecomeSucceededOneWaveRollouts) {
  test::TestDatabase pg;
  MigrateBefore(pg, 6);
  if (HasFatalFailure()) return;
  PushVersionOneOfM(pg);
  pg.Exec(
      "INSERT INTO deployments (model_name, version, label_selector, selector) "
      "VALUES ('m', '1', 'site=x', '{\"site\": \"x\"}')");
  auto db = Database::Open({.url = pg.url()});
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE((*db)->Migrate().ok());
  RolloutRepo repo;
  auto stored = (*db)->Transact("test", [&](Tx& tx) { return repo.Find(tx, "deploy-1"); });
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->progress.state, v1::ROLLOUT_STATE_SUCCEEDED);
  auto definition = rollout::DefinitionOf(stored->rollout);
  ASSERT_TRUE(definition.ok()) << definition.status();
  EXPECT_EQ(definition->plan, rollout::SingleWavePlan());
  EXPECT_EQ(definition->selector, (Labels{{"site", "x"}}));
}

TEST_F(DeploymentTest, TargetStatesFollowReportsButNeverDowngradeServing) {
  auto d = db_->Transact(
      "test", [&](Tx& tx) { return deployments_->Create(tx, "detector", "1.0", "", {}, kNow); });
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return deployments_->UpdateTargetState(
                                  tx, "cam-1", "detector", "1.0",
                                  v1::DEPLOYMENT_TARGET_STATE_IN_PROGRESS,
                                  v1::FAILURE_REASON_UNSPECIFIED, "", kNow + 1);
                            })
                  .ok());
  EXPECT_EQ(Targets(d->deployment_id()).at("cam-1"), v1::DEPLOYMENT_TARGET_STATE_IN_PROGRESS);
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return deployments_->UpdateTargetState(
                                  tx, "cam-1", "detector", "1.0",
                                  v1::DEPLOYMENT_TARGET_STATE_SERVING,
                                  v1::FAILURE_REASON_UNSPECIFIED, "", kNow + 2);
                            })
                  .ok());
  // A delayed "download started" must not pull a serving device back.
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return deployments_->UpdateTargetState(
                                  tx, "cam-1", "detector", "1.0",
                                  v1::DEPLOYMENT_TARGET_STATE_IN_PROGRESS,
                                  v1::FAILURE_REASON_UNSPECIFIED, "", kNow + 3);
                            })
                  .ok());
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return deployments_->UpdateTargetState(
                                  tx, "cam-2", "detector", "1.0",
                                  v1::DEPLOYMENT_TARGET_STATE_FAILED,
                                  v1::FAILURE_REASON_UNSPECIFIED, "digest mismatch", kNow + 4);
                            })
                  .ok());
  // Reports about another version leave this deployment alone.
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return deployments_->UpdateTargetState(
                                  tx, "gw-1", "detector", "2.0",
                                  v1::DEPLOYMENT_TARGET_STATE_SERVING,
                                  v1::FAILURE_REASON_UNSPECIFIED, "", kNow + 5);
                            })
                  .ok());

  auto got = deployments_->Get(d->deployment_id(), kAllTargets);
  ASSERT_TRUE(got.ok()) << got.status();
  std::map<std::string, v1::DeploymentTarget> by_device;
  for (const auto& t : got->deployment.targets()) by_device[t.device_id()] = t;
  EXPECT_EQ(by_device["cam-1"].state(), v1::DEPLOYMENT_TARGET_STATE_SERVING);
  EXPECT_EQ(by_device["cam-1"].updated_at().seconds(), kNow + 2);
  EXPECT_EQ(by_device["cam-2"].state(), v1::DEPLOYMENT_TARGET_STATE_FAILED);
  EXPECT_EQ(by_device["cam-2"].detail(), "digest mismatch");
  EXPECT_EQ(by_device["gw-1"].state(), v1::DEPLOYMENT_TARGET_STATE_PENDING);
}

}  // namespace
}  // namespace edgefleet::server

namespace edgefleet::server {
namespace {

// A rollout as the controller stores it: detector 2.0 for every device, two waves.
v1::Rollout TwoWaveRollout(const std::string& name) {
  rollout::RolloutDefinition definition;
  definition.name = name;
  definition.model_name = "detector";
  definition.version = "2.0";
  definition.plan = rollout::SingleWavePlan();
  rollout::Wave half;
  half.percent_bp = 50 * rollout::kBasisPointsPerPercent;
  definition.plan.waves.insert(definition.plan.waves.begin(), half);
  return rollout::NewRollout(definition);
}

TEST_F(DeploymentTest, RolloutRepoStoresRolloutsLeasesThemAndCountsTheirWaves) {
  RolloutRepo repo;
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return deployments_->Create(tx, "detector", "1.0", "", {}, kNow);
                            })
                  .ok());
  auto stored = db_->Transact(
      "test", [&](Tx& tx) { return repo.Insert(tx, TwoWaveRollout("r1"), "alice", kNow); });
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->progress.state, v1::ROLLOUT_STATE_PENDING);
  EXPECT_EQ(stored->rollout.waves_size(), 2);
  EXPECT_EQ(stored->rollout.created_by(), "alice");
  EXPECT_EQ(db_->Transact("test",
                          [&](Tx& tx) { return repo.Insert(tx, TwoWaveRollout("r1"), "a", kNow); })
                .status()
                .code(),
            absl::StatusCode::kAlreadyExists);

  // The lease: a second transaction skips a held rollout; an unknown one is NotFound.
  absl::Status held = db_->Transact("hold", [&](Tx& tx) -> absl::Status {
    auto mine = repo.Lock(tx, "r1", false);
    EXPECT_TRUE(mine.ok() && mine->has_value());
    auto other = db_->Transact("other", [&](Tx& tx2) { return repo.Lock(tx2, "r1", true); });
    EXPECT_TRUE(other.ok() && !other->has_value()) << "held by the first transaction";
    return absl::OkStatus();
  });
  ASSERT_TRUE(held.ok()) << held;
  EXPECT_EQ(
      db_->Transact("test", [&](Tx& tx) { return repo.Lock(tx, "nope", true); }).status().code(),
      absl::StatusCode::kNotFound);

  // Assigning supersedes the devices' older target and remembers the version they ran.
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return repo.Assign(tx, stored->deployment_id, 0,
                                                 {"cam-1", "cam-2", "gw-1"}, kNow + 10);
                            })
                  .ok());
  EXPECT_EQ(Desired("cam-1"), (std::map<std::string, std::string>{{"detector", "2.0"}}));
  auto matching = db_->Transact("test", [&](Tx& tx) { return repo.MatchingDevices(tx, 1); });
  ASSERT_TRUE(matching.ok()) << matching.status();
  EXPECT_TRUE(matching->empty()) << "the older deployment never takes a device back";

  // Outcomes: refused (signature), probation failure, install failure, timed out, serving.
  auto report = [&](const std::string& device, v1::DeploymentTargetState state,
                    v1::FailureReason reason) {
    ASSERT_TRUE(db_->Transact("test",
                              [&](Tx& tx) {
                                return deployments_->UpdateTargetState(
                                    tx, device, "detector", "2.0", state, reason, "", kNow + 11);
                              })
                    .ok());
  };
  report("cam-1", v1::DEPLOYMENT_TARGET_STATE_FAILED, v1::FAILURE_REASON_SIGNATURE);
  report("cam-2", v1::DEPLOYMENT_TARGET_STATE_FAILED, v1::FAILURE_REASON_LOAD);
  const std::vector<std::chrono::seconds> timeouts = {std::chrono::seconds(60),
                                                      std::chrono::seconds(60)};
  auto counts = db_->Transact("test", [&](Tx& tx) {
    return repo.CountWaves(tx, stored->deployment_id, timeouts, kNow + 69);
  });
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ((*counts)[0], ([] {
              rollout::WaveCounts c;
              c.targeted = 3;
              c.install_failed = 1;
              c.refused = 1;
              return c;
            }()));
  counts = db_->Transact("test", [&](Tx& tx) {
    return repo.CountWaves(tx, stored->deployment_id, timeouts, kNow + 70);
  });
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[0].timed_out, 1u) << "gw-1 waited 60 s";

  // Roll back: every target goes back to 1.0 under a newer metadata version than 2.0's release.
  auto rolled = db_->Transact(
      "test", [&](Tx& tx) { return repo.RollBack(tx, stored->deployment_id, kNow + 80); });
  ASSERT_TRUE(rolled.ok()) << rolled.status();
  EXPECT_EQ(*rolled, 3u);
  auto desired =
      db_->Transact("test", [&](Tx& tx) { return deployments_->DesiredForDevice(tx, "gw-1"); });
  ASSERT_TRUE(desired.ok());
  ASSERT_EQ(desired->size(), 1u);
  EXPECT_EQ(desired->front().meta.version(), "1.0");
  EXPECT_GT(desired->front().meta.metadata_version(), stored->rollout.metadata_version());
  // The device may fetch the version it goes back to (it may have lost its kept copy).
  EXPECT_TRUE(devices_->MayFetchArtifact("gw-1", Digest('a')).value_or(false));
  // A late report about 2.0 still moves a rolled back target (what the device did is counted);
  // its report of serving 1.0 again marks it rolled back.
  report("gw-1", v1::DEPLOYMENT_TARGET_STATE_SERVING, v1::FAILURE_REASON_UNSPECIFIED);
  counts = db_->Transact("test", [&](Tx& tx) {
    return repo.CountWaves(tx, stored->deployment_id, timeouts, kNow + 90);
  });
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[0].serving, 1u);
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return deployments_->UpdateTargetState(
                                  tx, "gw-1", "detector", "1.0",
                                  v1::DEPLOYMENT_TARGET_STATE_SERVING,
                                  v1::FAILURE_REASON_UNSPECIFIED, "", kNow + 95);
                            })
                  .ok());
  counts = db_->Transact("test", [&](Tx& tx) {
    return repo.CountWaves(tx, stored->deployment_id, timeouts, kNow + 96);
  });
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[0].serving, 0u);
  EXPECT_EQ((*counts)[0].rolled_back, 1u);
  // Once back, later reports about 2.0 do not move it again.
  report("gw-1", v1::DEPLOYMENT_TARGET_STATE_FAILED, v1::FAILURE_REASON_LOAD);
  counts = db_->Transact("test", [&](Tx& tx) {
    return repo.CountWaves(tx, stored->deployment_id, timeouts, kNow + 97);
  });
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)[0].rolled_back, 1u);

  // Events come back oldest first; the last one on its own.
  for (auto kind : {v1::ROLLOUT_EVENT_KIND_CREATED, v1::ROLLOUT_EVENT_KIND_WAVE_STARTED}) {
    v1::RolloutEvent e;
    e.set_kind(kind);
    ASSERT_TRUE(db_->Transact("test", [&](Tx& tx) { return repo.AddEvent(tx, "r1", e); }).ok());
  }
  auto events = db_->Transact("test", [&](Tx& tx) { return repo.Events(tx, "r1"); });
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].kind(), v1::ROLLOUT_EVENT_KIND_CREATED);
  auto last = db_->Transact("test", [&](Tx& tx) { return repo.LastEvent(tx, "r1"); });
  ASSERT_TRUE(last.ok() && last->has_value());
  EXPECT_EQ((*last)->kind(), v1::ROLLOUT_EVENT_KIND_WAVE_STARTED);

  // Pages by name: deploy-1 (the deployment) and r1.
  auto page = db_->Transact("test", [&](Tx& tx) { return repo.ListPage(tx, {"", 1}); });
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->items.size(), 1u);
  EXPECT_EQ(page->items[0].rollout.name(), "deploy-1");
  EXPECT_EQ(page->next_after, "deploy-1");
}

// A device already serving the version when its wave takes it sends no event: its target starts
// SERVING from what its last check-in reported.
TEST_F(DeploymentTest, AssignedDeviceAlreadyServingTheVersionStartsServing) {
  RolloutRepo repo;
  v1::Inventory inventory;
  v1::InstalledModel* m = inventory.add_models();
  m->set_model_name("detector");
  m->set_version("2.0");
  m->set_state(v1::MODEL_STATE_SERVING);
  ASSERT_TRUE(deployments_->CheckIn("cam-1", "1", inventory, kNow)->recorded);
  auto stored = db_->Transact(
      "test", [&](Tx& tx) { return repo.Insert(tx, TwoWaveRollout("r1"), "alice", kNow); });
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_TRUE(
      db_->Transact("test",
                    [&](Tx& tx) {
                      return repo.Assign(tx, stored->deployment_id, 0, {"cam-1", "cam-2"}, kNow);
                    })
          .ok());
  auto targets = Targets(std::to_string(stored->deployment_id));
  EXPECT_EQ(targets.at("cam-1"), v1::DEPLOYMENT_TARGET_STATE_SERVING);
  EXPECT_EQ(targets.at("cam-2"), v1::DEPLOYMENT_TARGET_STATE_PENDING);
}

// Targets have no foreign key to devices (migration 0018): the assignment writes targets only
// for devices that exist, and a device can never be deleted out from under its targets.
TEST_F(DeploymentTest, TargetsAreWrittenOnlyForEnrolledDevicesWhichAreNeverDeleted) {
  RolloutRepo repo;
  auto stored = db_->Transact(
      "test", [&](Tx& tx) { return repo.Insert(tx, TwoWaveRollout("r1"), "alice", kNow); });
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_TRUE(
      db_->Transact(
             "test",
             [&](Tx& tx) {
               return repo.Assign(tx, stored->deployment_id, 0, {"cam-1", "never-enrolled"}, kNow);
             })
          .ok());
  auto targets = Targets(std::to_string(stored->deployment_id));
  EXPECT_EQ(targets.count("cam-1"), 1u);
  EXPECT_EQ(targets.count("never-enrolled"), 0u);
  EXPECT_EQ(pg_.QueryValue("SELECT count(*) FROM deployment_targets t WHERE NOT EXISTS "
                           "(SELECT 1 FROM devices d WHERE d.id = t.device_id)"),
            "0");

  try {
    pg_.Exec("DELETE FROM devices WHERE id = 'cam-1'");
    ADD_FAILURE() << "a device with targets was deleted";
  } catch (const pqxx::sql_error& e) {
    EXPECT_NE(std::string(e.what()).find("decommission it instead"), std::string::npos) << e.what();
  }
  EXPECT_EQ(pg_.QueryValue("SELECT count(*) FROM devices WHERE id = 'cam-1'"), "1");
}

TEST_F(DeploymentTest, ACaptureRequestIsStoredAndTravelsWithTheTargetedVersion) {
  v1::CaptureSpec capture;
  capture.set_enabled(true);
  capture.set_random_rate(0.5);
  capture.set_max_bytes_per_day(4096);
  capture.set_upload_start_hour(22);
  capture.set_upload_end_hour(5);
  auto with = db_->Transact("test", [&](Tx& tx) {
    return deployments_->Create(tx, "detector", "2.0", "site=berlin", {{"site", "berlin"}}, kNow,
                                &capture);
  });
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_EQ(with->capture().SerializeAsString(), capture.SerializeAsString());
  auto without = db_->Transact("test", [&](Tx& tx) {
    return deployments_->Create(tx, "classifier", "0.1", "", {}, kNow + 1);
  });
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_FALSE(without->has_capture());

  auto page = deployments_->Get(with->deployment_id(), kAllTargets);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->deployment.capture().max_bytes_per_day(), 4096u);

  auto desired =
      db_->Transact("test", [&](Tx& tx) { return deployments_->DesiredForDevice(tx, "cam-1"); });
  ASSERT_TRUE(desired.ok()) << desired.status();
  ASSERT_EQ(desired->size(), 2u);
  for (const StoredVersion& v : *desired) {
    if (v.meta.model_name() == "detector") {
      ASSERT_TRUE(v.capture.has_value());
      EXPECT_EQ(v.capture->upload_start_hour(), 22u);
      EXPECT_EQ(v.capture->max_bytes_per_day(), 4096u);
    } else {
      EXPECT_FALSE(v.capture.has_value()) << "the classifier's release asks for nothing";
    }
  }
}

}  // namespace
}  // namespace edgefleet::server
