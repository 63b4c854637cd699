#include "server/store/device_repo.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>

#include "server/store/deployment_repo.h"
#include "server/store/enrollment_token_repo.h"
#include "tests/server/store/store_test_util.h"

namespace edgefleet::server {
namespace {

constexpr int64_t kNow = 1'800'000'000;

v1::Inventory MakeInventory(const std::string& agent_version) {
  v1::Inventory inv;
  inv.set_hardware("rpi4");
  inv.set_os("debian 12");
  inv.set_agent_version(agent_version);
  inv.set_free_disk_bytes(12'345'678'901ULL);
  v1::InstalledModel* m = inv.add_models();
  m->set_model_name("detector");
  m->set_version("1.0.0");
  m->set_state(v1::MODEL_STATE_SERVING);
  m->set_artifact_sha256(Digest('d'));
  return inv;
}

std::vector<std::string> Ids(const std::vector<v1::Device>& devices) {
  std::vector<std::string> ids;
  for (const auto& d : devices) ids.push_back(d.device_id());
  return ids;
}

TEST_F(StoreTest, EnrolledDevicesCanBeFetchedAndListedBySelector) {
  DeviceRepo repo(*db_);
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return repo.Enroll(tx, "cam-2", {{"site", "berlin"}, {"line", "3"}},
                                                 MakeInventory("0.1"), "0a", kNow);
                            })
                  .ok());
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return repo.Enroll(tx, "cam-1", {{"site", "berlin"}, {"line", "4"}},
                                                 MakeInventory("0.1"), "0b", kNow);
                            })
                  .ok());
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return repo.Enroll(tx, "gw-1", {{"site", "paris"}},
                                                 MakeInventory("0.1"), "0c", kNow);
                            })
                  .ok());

  auto cam = repo.Get("cam-2");
  ASSERT_TRUE(cam.ok()) << cam.status();
  EXPECT_EQ(cam->status(), v1::DEVICE_STATUS_ACTIVE);
  EXPECT_EQ(cam->labels().at("site"), "berlin");
  EXPECT_EQ(cam->labels().at("line"), "3");
  EXPECT_EQ(cam->first_seen().seconds(), kNow);
  EXPECT_EQ(cam->inventory().free_disk_bytes(), 12'345'678'901ULL);
  ASSERT_EQ(cam->inventory().models_size(), 1);
  EXPECT_EQ(cam->inventory().models(0).state(), v1::MODEL_STATE_SERVING);
  EXPECT_EQ(cam->inventory().models(0).artifact_sha256(), Digest('d'));

  EXPECT_EQ(Ids(*repo.List({{"site", "berlin"}})), (std::vector<std::string>{"cam-1", "cam-2"}));
  EXPECT_EQ(Ids(*repo.List({{"site", "berlin"}, {"line", "4"}})),
            (std::vector<std::string>{"cam-1"}));
  EXPECT_EQ(Ids(*repo.List({})), (std::vector<std::string>{"cam-1", "cam-2", "gw-1"}));
  EXPECT_TRUE(repo.List({{"site", "tokyo"}})->empty());

  absl::Status missing = repo.Get("nope").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.message(), "device nope not found");
}

// A fleet-wide token enrolls a factory line at once: one enrollment's certificate signing must
// not hold the token (its row lock) against the next enrollment.
TEST_F(StoreTest, EnrollmentsWithOneTokenDoNotWaitForEachOthersCertificate) {
  DeviceRepo repo(*db_);
  EnrollmentTokenRepo tokens(*db_);
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return tokens.Create(tx, "line-3", Digest('t'), 2, kNow + 3600,
                                                   {{"site", "berlin"}}, "line 3");
                            })
                  .ok());
  std::future_status other_use = std::future_status::deferred;
  std::future<absl::StatusOr<Labels>> use;  // joined after the enrollment's commit
  auto enrolled = db_->Transact("test", [&](Tx& tx) {
    return repo.EnrollWithToken(tx, {Digest('t'), "cam-1", MakeInventory("0.1"), kNow},
                                [&]() -> absl::StatusOr<DeviceRepo::IssuedCertificate> {
                                  // While this certificate is being made, another device uses the
                                  // same token.
                                  use = std::async(std::launch::async, [&] {
                                    return db_->Transact("other", [&](Tx& other) {
                                      return tokens.Consume(other, Digest('t'), kNow);
                                    });
                                  });
                                  other_use = use.wait_for(std::chrono::seconds(5));
                                  return DeviceRepo::IssuedCertificate{"pem", "0a", kNow + 3600};
                                });
  });
  ASSERT_TRUE(enrolled.ok()) << enrolled.status();
  ASSERT_TRUE(use.get().ok());
  EXPECT_EQ(other_use, std::future_status::ready)
      << "the second use of the token waited for the first enrollment to commit";
  EXPECT_EQ(enrolled->device.labels().at("site"), "berlin");
  // Both uses counted: a third enrollment finds none left, and rolls back whole.
  auto third = db_->Transact("test", [&](Tx& tx) {
    return repo.EnrollWithToken(tx, {Digest('t'), "cam-2", MakeInventory("0.1"), kNow}, [] {
      return absl::StatusOr<DeviceRepo::IssuedCertificate>(
          DeviceRepo::IssuedCertificate{"pem", "0b", kNow + 3600});
    });
  });
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(repo.Get("cam-2").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(StoreTest, AnActiveDeviceIsEnrolledAgainOnlyOnceAfterARekeyAndKeepsItsLabels) {
  DeviceRepo repo(*db_);
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return repo.Enroll(tx, "cam-1", {{"site", "berlin"}, {"line", "3"}},
                                                 MakeInventory("0.1"), "01", kNow);
                            })
                  .ok());
  auto takeover = db_->Transact("test", [&](Tx& tx) {
    return repo.Enroll(tx, "cam-1", {{"site", "evil"}}, MakeInventory("0.2"), "02", kNow + 9);
  });
  EXPECT_EQ(takeover.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(pg_.QueryValue("SELECT certificate_serial FROM devices WHERE id = 'cam-1'"), "01");

  ASSERT_TRUE(
      db_->Transact("test", [&](Tx& tx) { return repo.AllowRekey(tx, "cam-1", kNow + 100); }).ok());
  auto again = db_->Transact("test", [&](Tx& tx) {
    return repo.Enroll(tx, "cam-1", {{"line", "5"}, {"tier", "gpu"}}, MakeInventory("0.2"), "02",
                       kNow + 99);
  });
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(Labels(again->labels().begin(), again->labels().end()),
            (Labels{{"site", "berlin"}, {"line", "3"}}));
  EXPECT_EQ(again->first_seen().seconds(), kNow);
  EXPECT_EQ(again->last_seen().seconds(), kNow + 99);
  EXPECT_EQ(again->inventory().agent_version(), "0.2");
  EXPECT_EQ(pg_.QueryValue("SELECT certificate_serial FROM devices WHERE id = 'cam-1'"), "02");
  EXPECT_EQ(db_->Transact("test",
                          [&](Tx& tx) {
                            return repo.Enroll(tx, "cam-1", {}, MakeInventory("0.3"), "03",
                                               kNow + 100);
                          })
                .status()
                .code(),
            absl::StatusCode::kAlreadyExists)
      << "a rekey allows one enrollment";
}

TEST_F(StoreTest, LabelsAreSetAndRemoved) {
  DeviceRepo repo(*db_);
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return repo.Enroll(
                                  tx, "cam-1",
                                  {{"site", "berlin"}, {"line", "3"}, {"canary", "yes"}}, {}, "01",
                                  kNow);
                            })
                  .ok());
  auto updated = db_->Transact("test", [&](Tx& tx) {
    return repo.UpdateLabels(tx, "cam-1", {{"line", "4"}, {"room", "a/b"}}, {"canary", "absent"});
  });
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(Labels(updated->labels().begin(), updated->labels().end()),
            (Labels{{"line", "4"}, {"room", "a/b"}, {"site", "berlin"}}));
  EXPECT_EQ(Ids(*repo.List({{"room", "a/b"}})), (std::vector<std::string>{"cam-1"}));
  EXPECT_EQ(db_->Transact("test",
                          [&](Tx& tx) {
                            return repo.UpdateLabels(tx, "ghost", {{"a", "b"}}, {});
                          })
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StoreTest, DecommissionedDeviceIsRefusedEverywhere) {
  DeviceRepo repo(*db_);
  DeploymentRepo deployments(*db_);
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return repo.Enroll(tx, "cam-1", {}, MakeInventory("0.1"), "01", kNow);
                            })
                  .ok());
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return repo.Enroll(tx, "cam-2", {}, MakeInventory("0.1"), "02", kNow);
                            })
                  .ok());
  auto checked_in = deployments.CheckIn("cam-1", "01", MakeInventory("0.3"), kNow + 30);
  ASSERT_TRUE(checked_in.ok()) << checked_in.status();
  EXPECT_TRUE(checked_in->recorded);
  EXPECT_EQ(repo.Get("cam-1")->last_seen().seconds(), kNow + 30);
  EXPECT_EQ(repo.Get("cam-1")->inventory().agent_version(), "0.3");
  // The holder of another certificate (one the device's re-enrollment replaced) learns the
  // device's identity, to be refused by it, and writes nothing.
  auto replaced = deployments.CheckIn("cam-1", "00", MakeInventory("0.9"), kNow + 40);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_FALSE(replaced->recorded);
  EXPECT_TRUE(replaced->desired.empty());
  EXPECT_EQ(replaced->identity.certificate_serial, "01");
  EXPECT_EQ(repo.Get("cam-1")->inventory().agent_version(), "0.3");
  EXPECT_EQ(repo.Get("cam-1")->last_seen().seconds(), kNow + 30);

  auto gone = db_->Transact("test", [&](Tx& tx) { return repo.Decommission(tx, "cam-1"); });
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_EQ(gone->status(), v1::DEVICE_STATUS_DECOMMISSIONED);
  EXPECT_EQ(*repo.Status("cam-1"), v1::DEVICE_STATUS_DECOMMISSIONED);
  EXPECT_EQ(*repo.Status("cam-2"), v1::DEVICE_STATUS_ACTIVE);

  absl::Status reenroll =
      db_->Transact("test",
                    [&](Tx& tx) {
                      return repo.Enroll(tx, "cam-1", {}, MakeInventory("0.1"), "03", kNow + 60);
                    })
          .status();
  EXPECT_EQ(reenroll.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(reenroll.message(), "device cam-1 is decommissioned");
  auto after = deployments.CheckIn("cam-1", "01", MakeInventory("0.4"), kNow + 90);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_FALSE(after->recorded);
  EXPECT_EQ(after->identity.status, v1::DEVICE_STATUS_DECOMMISSIONED);
  EXPECT_EQ(repo.Get("cam-1")->inventory().agent_version(), "0.3");
  EXPECT_EQ(deployments.CheckIn("ghost", "01", MakeInventory("0.4"), kNow + 90).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(
      db_->Transact("test", [&](Tx& tx) { return repo.Decommission(tx, "ghost"); }).status().code(),
      absl::StatusCode::kNotFound);
  EXPECT_EQ(repo.Status("ghost").status().code(), absl::StatusCode::kNotFound);

  auto counts = repo.CountByStatus();
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(*counts,
            (std::map<std::string, int64_t>{{"active", 1}, {"decommissioned", 1}, {"pending", 0}}));
}

// The batched last-seen write: one statement for many devices, only ever forward, any id.
TEST_F(StoreTest, TouchLastSeenMovesEachDeviceForwardInOneStatement) {
  DeviceRepo repo(*db_);
  DeploymentRepo deployments(*db_);
  const std::vector<std::string> ids = {"cam-1", "odd \"id\", with {braces}\\"};
  for (const std::string& id : ids) {
    ASSERT_TRUE(db_->Transact("test",
                              [&](Tx& tx) {
                                return repo.Enroll(tx, id, {}, MakeInventory("0.1"), id, kNow + 50);
                              })
                    .ok());
  }
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return repo.TouchLastSeen(
                                  tx,
                                  {{ids[0], kNow + 60}, {ids[1], kNow + 10}, {"ghost", kNow + 70}});
                            })
                  .ok());
  EXPECT_EQ(repo.Get(ids[0])->last_seen().seconds(), kNow + 60);
  EXPECT_EQ(repo.Get(ids[1])->last_seen().seconds(), kNow + 50) << "never moved back";
  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return repo.TouchLastSeen(tx, {{ids[1], kNow + 80}});
                            })
                  .ok());
  EXPECT_EQ(repo.Get(ids[1])->last_seen().seconds(), kNow + 80);

  // A check-in reporting the same inventory leaves the row alone.
  const std::string row = pg_.QueryValue("SELECT ctid::text FROM devices WHERE id = 'cam-1'");
  ASSERT_TRUE(deployments.CheckIn("cam-1", "cam-1", MakeInventory("0.1"), kNow + 90)->recorded);
  EXPECT_EQ(pg_.QueryValue("SELECT ctid::text FROM devices WHERE id = 'cam-1'"), row);
  EXPECT_EQ(repo.Get("cam-1")->last_seen().seconds(), kNow + 60);
}

// What edgefleet_devices_unseen reads: active devices by the age of their last check-in, for
// several cutoffs at once; decommissioned devices do not count.
TEST_F(StoreTest, CountActiveNotSeenSinceCountsEachCutoff) {
  DeviceRepo repo(*db_);
  // Last seen at kNow - 10, kNow - 100, kNow - 1000 and (decommissioned) kNow - 5000.
  // A pair, not a structured binding: clang 14 (Debian 12's) cannot capture bindings in lambdas.
  for (const std::pair<std::string, int64_t>& device :
       std::vector<std::pair<std::string, int64_t>>{{"fresh", kNow - 10},
                                                    {"late", kNow - 100},
                                                    {"gone", kNow - 1000},
                                                    {"old", kNow - 5000}}) {
    ASSERT_TRUE(db_->Transact("test",
                              [&](Tx& tx) {
                                return repo.Enroll(tx, device.first, {}, MakeInventory("0.1"),
                                                   device.first, device.second);
                              })
                    .ok());
  }
  ASSERT_TRUE(db_->Transact("test", [&](Tx& tx) { return repo.Decommission(tx, "old"); }).ok());

  auto counts = repo.CountActiveNotSeenSince({kNow - 5, kNow - 50, kNow - 500, kNow - 3000, kNow});
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(*counts, (std::vector<int64_t>{3, 2, 1, 0, 3}));

  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return repo.TouchLastSeen(tx, {{"gone", kNow}});
                            })
                  .ok());
  counts = repo.CountActiveNotSeenSince({kNow - 50, kNow - 500});
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(*counts, (std::vector<int64_t>{1, 0})) << "a check-in makes a device seen again";

  counts = repo.CountActiveNotSeenSince({});
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_TRUE(counts->empty());
}

}  // namespace
}  // namespace edgefleet::server
