// The rollout controller on a real PostgreSQL (RolloutRepo, DeploymentRepo) with a fake clock:
// waves, gates, roll back under a higher metadata version, leases, operator actions.
#include "server/rollout/controller.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "server/store/audit_repo.h"
#include "server/store/deployment_repo.h"
#include "server/store/device_repo.h"
#include "server/store/model_repo.h"
#include "server/store/rollout_repo.h"
#include "tests/support/test_database.h"

namespace edgefleet::server::rollout {
namespace {

constexpr int kDevices = 10;

class ControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = Database::Open({.url = pg_.url()});
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *std::move(db);
    ASSERT_TRUE(db_->Migrate().ok());
    devices_ = std::make_unique<DeviceRepo>(*db_);
    models_ = std::make_unique<ModelRepo>(*db_);
    deployments_ = std::make_unique<DeploymentRepo>(*db_);
    controller_ =
        std::make_unique<RolloutController>(*db_, rollouts_, audit_, samples_, clock_, nullptr);
    for (int i = 0; i < kDevices; ++i) Enroll("dev-" + std::to_string(i), i % 2 ? "a" : "b");
    Publish("1.0", 'a');
    Publish("2.0", 'b');
    // Every device runs 1.0 first.
    auto first = db_->Transact(
        "test", [&](Tx& tx) { return deployments_->Create(tx, "detector", "1.0", "", {}, Now()); });
    ASSERT_TRUE(first.ok()) << first.status();
    for (int i = 0; i < kDevices; ++i) Report("dev-" + std::to_string(i), "1.0", true);
  }

  int64_t Now() const { return ToUnixSeconds(clock_.Now()); }

  void Enroll(const std::string& id, const std::string& hw) {
    ASSERT_TRUE(db_->Transact("test",
                              [&](Tx& tx) {
                                return devices_->Enroll(tx, id, {{"hw", hw}}, {}, id, Now());
                              })
                    .ok());
  }

  void Publish(const std::string& version, char digest) {
    v1::ModelVersion mv;
    mv.set_model_name("detector");
    mv.set_version(version);
    mv.set_format(v1::MODEL_FORMAT_ONNX);
    mv.set_artifact_sha256(std::string(32, digest));
    mv.set_size_bytes(10);
    mv.set_metadata_version(
        *db_->Transact("test", [&](Tx& tx) { return models_->NextMetadataVersion(tx); }));
    ASSERT_TRUE(db_->Transact("test",
                              [&](Tx& tx) {
                                return models_->InsertVersion(tx, mv, "manifest", "sig", "k1");
                              })
                    .ok());
  }

  // What the device's agent reports: ACTIVATED (serving) or FAILED with `reason`.
  void Report(const std::string& device, const std::string& version, bool serving,
              v1::FailureReason reason = v1::FAILURE_REASON_LOAD) {
    ASSERT_TRUE(db_->Transact("test",
                              [&](Tx& tx) {
                                return deployments_->UpdateTargetState(
                                    tx, device, "detector", version,
                                    serving ? v1::DEPLOYMENT_TARGET_STATE_SERVING
                                            : v1::DEPLOYMENT_TARGET_STATE_FAILED,
                                    reason, "", Now());
                              })
                    .ok());
  }

  // device -> (version, metadata version) it is told to run.
  std::map<std::string, std::pair<std::string, uint64_t>> Desired() {
    std::map<std::string, std::pair<std::string, uint64_t>> out;
    for (int i = 0; i < kDevices; ++i) {
      const std::string id = "dev-" + std::to_string(i);
      auto desired =
          db_->Transact("test", [&](Tx& tx) { return deployments_->DesiredForDevice(tx, id); });
      EXPECT_TRUE(desired.ok()) << desired.status();
      if (desired.ok() && !desired->empty()) {
        out[id] = {desired->front().meta.version(), desired->front().meta.metadata_version()};
      }
    }
    return out;
  }

  std::vector<std::string> DevicesOn(const std::string& version) {
    std::vector<std::string> out;
    for (const auto& [id, d] : Desired()) {
      if (d.first == version) out.push_back(id);
    }
    return out;
  }

  v1::CreateRolloutRequest Request(const std::string& waves, v1::RolloutFailureAction on_failure) {
    v1::CreateRolloutRequest r;
    r.set_name("r1");
    r.set_model_name("detector");
    r.set_version("2.0");
    auto sizes = ParseWaveSizes(waves);
    EXPECT_TRUE(sizes.ok());
    for (const auto& w : *sizes) *r.add_waves() = w;
    r.mutable_soak()->set_seconds(10);
    r.mutable_gates()->set_min_finished_devices(1);
    r.mutable_gates()->set_max_install_failure_percent(10);
    r.mutable_gates()->set_inference_gates(false);  // no agent sends telemetry here
    r.set_on_failure(on_failure);
    return r;
  }

  size_t EventCount(const std::string& name) {
    auto got = controller_->Get(name);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? static_cast<size_t>(got->events_size()) : 0;
  }

  v1::RolloutState State(const std::string& name) {
    auto got = controller_->Get(name);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? got->state() : v1::ROLLOUT_STATE_UNSPECIFIED;
  }

  test::TestDatabase pg_;
  std::unique_ptr<Database> db_;
  FakeClock clock_;
  RolloutRepo rollouts_;
  AuditRepo audit_;
  InferenceSampleRepo samples_;
  std::unique_ptr<DeviceRepo> devices_;
  std::unique_ptr<ModelRepo> models_;
  std::unique_ptr<DeploymentRepo> deployments_;
  std::unique_ptr<RolloutController> controller_;
};

// The running loop does not make an operator wait for its next tick (5 s by default): a new
// rollout's first wave, and a promotion, are assigned as soon as they are asked for.
TEST_F(ControllerTest, TheLoopActsAtOnceOnANewRolloutAndOnAPromotion) {
  RolloutController looping(*db_, rollouts_, audit_, samples_, clock_, nullptr,
                            {.interval = std::chrono::hours(1)});
  looping.Start();
  auto waits_for = [&](size_t devices) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (DevicesOn("2.0").size() != devices && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return DevicesOn("2.0").size() == devices;
  };
  ASSERT_TRUE(
      looping.Create(Request("10%,50%,100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE), "alice").ok());
  ASSERT_TRUE(waits_for(1)) << "the first wave waited for the next tick, an hour away";

  const auto started = looping.Get("r1");
  ASSERT_TRUE(started.ok()) << started.status();
  ASSERT_EQ(started->state(), v1::ROLLOUT_STATE_RUNNING);
  // The wave's device serves, so its gates pass; promoting skips the rest of its soak.
  Report(DevicesOn("2.0").front(), "2.0", true);
  ASSERT_TRUE(looping.Act("r1", OperatorAction::kPromote, "looks good", "alice").ok());
  EXPECT_TRUE(waits_for(5)) << "the promoted wave waited for the next tick";
  looping.Stop();
}

TEST_F(ControllerTest, GoodVersionGoesThroughItsWavesAndEveryDecisionIsRecordedOnce) {
  auto created =
      controller_->Create(Request("10%,50%,100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE), "alice");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->state(), v1::ROLLOUT_STATE_PENDING);
  EXPECT_TRUE(DevicesOn("2.0").empty()) << "nothing is assigned before the controller runs";

  ASSERT_TRUE(controller_->EvaluateAll().ok());
  EXPECT_EQ(State("r1"), v1::ROLLOUT_STATE_RUNNING);
  std::vector<std::string> wave0 = DevicesOn("2.0");
  ASSERT_EQ(wave0.size(), 1u);
  const size_t events = EventCount("r1");
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  EXPECT_EQ(EventCount("r1"), events + 1) << "one hold recorded, repeated holds are not";

  Report(wave0[0], "2.0", true);
  ASSERT_TRUE(controller_->EvaluateAll().ok());  // gates pass: the soak starts
  EXPECT_EQ(DevicesOn("2.0").size(), 1u);
  clock_.Advance(std::chrono::seconds(10));
  ASSERT_TRUE(controller_->EvaluateAll().ok());  // promoted to 50%
  EXPECT_EQ(DevicesOn("2.0").size(), 5u);
  EXPECT_EQ(controller_->Get("r1")->current_wave(), 1u);
  for (const std::string& id : DevicesOn("2.0")) Report(id, "2.0", true);
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  clock_.Advance(std::chrono::seconds(10));
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  EXPECT_EQ(DevicesOn("2.0").size(), 10u);
  for (const std::string& id : DevicesOn("2.0")) Report(id, "2.0", true);
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  clock_.Advance(std::chrono::seconds(10));
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  auto done = controller_->Get("r1");
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state(), v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_TRUE(done->has_finished_at());
  for (const auto& wave : done->waves()) EXPECT_EQ(wave.state(), v1::WAVE_STATE_PASSED);
  EXPECT_EQ(done->waves(0).targeted() + done->waves(1).targeted() + done->waves(2).targeted(), 10u);
  std::map<v1::RolloutEventKind, int> kinds;
  for (const auto& e : done->events()) ++kinds[e.kind()];
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_CREATED], 1);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_WAVE_STARTED], 1);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_PROMOTED], 2);
  EXPECT_EQ(kinds[v1::ROLLOUT_EVENT_KIND_SUCCEEDED], 1);

  // A device enrolled after the rollout succeeded joins its last wave.
  Enroll("dev-late", "a");
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  auto late =
      db_->Transact("test", [&](Tx& tx) { return deployments_->DesiredForDevice(tx, "dev-late"); });
  ASSERT_TRUE(late.ok());
  ASSERT_EQ(late->size(), 1u);
  EXPECT_EQ(late->front().meta.version(), "2.0");
}

TEST_F(ControllerTest, FailedInstallsRollTheFirstWaveBackUnderAHigherMetadataVersion) {
  auto created =
      controller_->Create(Request("20%,100%", v1::ROLLOUT_FAILURE_ACTION_ROLLBACK), "alice");
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  std::vector<std::string> wave0 = DevicesOn("2.0");
  ASSERT_EQ(wave0.size(), 2u);
  const uint64_t release = controller_->Get("r1")->metadata_version();
  Report(wave0[0], "2.0", false, v1::FAILURE_REASON_LOAD);
  Report(wave0[1], "2.0", false, v1::FAILURE_REASON_SIGNATURE);
  auto counted = controller_->Get("r1");
  ASSERT_TRUE(counted.ok());
  EXPECT_EQ(counted->waves(0).install_failed(), 1u);
  EXPECT_EQ(counted->waves(0).refused(), 1u);

  ASSERT_TRUE(controller_->EvaluateAll().ok());
  auto rolled = controller_->Get("r1");
  ASSERT_TRUE(rolled.ok());
  EXPECT_EQ(rolled->state(), v1::ROLLOUT_STATE_ROLLED_BACK);
  EXPECT_EQ(rolled->waves(0).state(), v1::WAVE_STATE_FAILED);
  EXPECT_TRUE(DevicesOn("2.0").empty());
  auto desired = Desired();
  ASSERT_EQ(desired.size(), static_cast<size_t>(kDevices));
  for (const std::string& id : wave0) {
    EXPECT_EQ(desired[id].first, "1.0") << id;
    EXPECT_GT(desired[id].second, release) << "the roll back is a newer release";
  }
  // Nothing more happens to a finished rollout.
  const size_t events = EventCount("r1");
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  EXPECT_EQ(EventCount("r1"), events);
}

// After the roll back decision the wave's devices still report: a probation failure that
// arrives late counts as one, and a device back on its previous version is counted as rolled back
// (the targets would otherwise stay frozen at "in progress" and "serving" the rolled back version).
TEST_F(ControllerTest, ReportsAfterARollBackKeepTheWaveTruthful) {
  auto created =
      controller_->Create(Request("30%,100%", v1::ROLLOUT_FAILURE_ACTION_ROLLBACK), "alice");
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  std::vector<std::string> wave0 = DevicesOn("2.0");
  ASSERT_EQ(wave0.size(), 3u);
  Report(wave0[0], "2.0", false, v1::FAILURE_REASON_LOAD);
  Report(wave0[1], "2.0", true);
  // wave0[2] is still downloading when the controller decides.
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  ASSERT_EQ(State("r1"), v1::ROLLOUT_STATE_ROLLED_BACK);

  Report(wave0[2], "2.0", false, v1::FAILURE_REASON_PROBATION_FAILED);
  Report(wave0[1], "1.0", true);  // swapped back to its kept copy
  Report(wave0[0], "1.0", true);  // never left 1.0: its install failure stays counted
  auto got = controller_->Get("r1");
  ASSERT_TRUE(got.ok()) << got.status();
  const v1::WaveStatus& w = got->waves(0);
  EXPECT_EQ(w.targeted(), 3u);
  EXPECT_EQ(w.install_failed(), 1u);
  EXPECT_EQ(w.probation_failed(), 1u) << "the late report is counted";
  EXPECT_EQ(w.rolled_back(), 1u);
  EXPECT_EQ(w.serving(), 0u);
  EXPECT_EQ(w.in_progress(), 0u) << "no device is left looking busy";
  auto deployment = deployments_->Get(
      pg_.QueryValue("SELECT deployment_id FROM rollouts WHERE name = 'r1'"), {"", kMaxPageSize});
  ASSERT_TRUE(deployment.ok()) << deployment.status();
  EXPECT_EQ(deployment->deployment.target_counts().rolled_back(), 1u);
  for (const auto& t : deployment->deployment.targets()) {
    if (t.device_id() == wave0[1]) {
      EXPECT_EQ(t.state(), v1::DEPLOYMENT_TARGET_STATE_ROLLED_BACK);
      EXPECT_EQ(t.detail(), "serving 1.0 again after the roll back");
    }
  }
}

TEST_F(ControllerTest, FailedGatePausesAndTheOtherDevicesAreNeverTargeted) {
  ASSERT_TRUE(
      controller_->Create(Request("20%,100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE), "alice").ok());
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  for (const std::string& id : DevicesOn("2.0")) Report(id, "2.0", false);
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  EXPECT_EQ(State("r1"), v1::ROLLOUT_STATE_PAUSED);
  clock_.Advance(std::chrono::hours(2));
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  EXPECT_EQ(DevicesOn("2.0").size(), 2u);
  // Resuming with the gate still failing pauses again.
  ASSERT_TRUE(controller_->Act("r1", OperatorAction::kResume, "retry", "bob").ok());
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  EXPECT_EQ(State("r1"), v1::ROLLOUT_STATE_PAUSED);
  auto rolled = controller_->Act("r1", OperatorAction::kRollBack, "bad model", "bob");
  ASSERT_TRUE(rolled.ok()) << rolled.status();
  EXPECT_EQ(rolled->state(), v1::ROLLOUT_STATE_ROLLED_BACK);
  EXPECT_TRUE(DevicesOn("2.0").empty());
  EXPECT_EQ(rolled->events().rbegin()->operator_name(), "bob");
}

TEST_F(ControllerTest, OperatorActionsAreCheckedAgainstTheState) {
  ASSERT_TRUE(
      controller_->Create(Request("20%,100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE), "alice").ok());
  EXPECT_EQ(controller_->Act("r1", OperatorAction::kResume, "", "bob").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(controller_->Act("nope", OperatorAction::kPause, "", "bob").status().code(),
            absl::StatusCode::kNotFound);
  auto paused = controller_->Act("r1", OperatorAction::kPause, "night", "bob");
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(paused->state(), v1::ROLLOUT_STATE_PAUSED);
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  EXPECT_TRUE(DevicesOn("2.0").empty()) << "a paused rollout assigns nothing";
  ASSERT_TRUE(controller_->Act("r1", OperatorAction::kResume, "", "bob").ok());
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  EXPECT_EQ(DevicesOn("2.0").size(), 2u);
  ASSERT_TRUE(controller_->Act("r1", OperatorAction::kAbort, "", "bob").ok());
  EXPECT_EQ(controller_->Act("r1", OperatorAction::kPause, "", "bob").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ControllerTest, CreateValidatesAndRejectsDuplicatesAndUnknownVersions) {
  v1::CreateRolloutRequest bad = Request("10%,50%", v1::ROLLOUT_FAILURE_ACTION_PAUSE);
  EXPECT_EQ(controller_->Create(bad, "a").status().code(), absl::StatusCode::kInvalidArgument);
  v1::CreateRolloutRequest missing = Request("100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE);
  missing.set_version("9.9");
  EXPECT_EQ(controller_->Create(missing, "a").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(controller_->Create(Request("100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE), "a").ok());
  EXPECT_EQ(
      controller_->Create(Request("100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE), "a").status().code(),
      absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(controller_->Get("nope").status().code(), absl::StatusCode::kNotFound);
  auto listed = controller_->List({"", 10});
  ASSERT_TRUE(listed.ok()) << listed.status();
  // deploy-1 (the deployment of 1.0 is a one-wave rollout) and r1, without events.
  ASSERT_EQ(listed->items.size(), 2u);
  EXPECT_EQ(listed->items[0].name(), "deploy-1");
  EXPECT_EQ(listed->items[1].name(), "r1");
  EXPECT_EQ(listed->items[1].events_size(), 0);
}

// The lease: while another transaction holds a rollout's row, the controller skips it; a replica
// evaluating after a transition sees the new state and does not repeat it.
TEST_F(ControllerTest, AHeldLeaseIsSkippedAndTransitionsHappenOnce) {
  ASSERT_TRUE(
      controller_->Create(Request("20%,100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE), "alice").ok());
  absl::Status held = db_->Transact("hold", [&](Tx& tx) -> absl::Status {
    auto locked = rollouts_.Lock(tx, "r1", false);
    if (!locked.ok()) return locked.status();
    EXPECT_TRUE(controller_->Evaluate("r1").ok());
    return absl::OkStatus();
  });
  ASSERT_TRUE(held.ok()) << held;
  EXPECT_EQ(State("r1"), v1::ROLLOUT_STATE_PENDING) << "the lease holder's turn, not ours";
  RolloutController replica(*db_, rollouts_, audit_, samples_, clock_, nullptr);
  ASSERT_TRUE(controller_->Evaluate("r1").ok());
  ASSERT_TRUE(replica.Evaluate("r1").ok());
  auto got = controller_->Get("r1");
  ASSERT_TRUE(got.ok());
  int started = 0;
  for (const auto& e : got->events()) started += e.kind() == v1::ROLLOUT_EVENT_KIND_WAVE_STARTED;
  EXPECT_EQ(started, 1);
  EXPECT_EQ(DevicesOn("2.0").size(), 2u);
}

TEST_F(ControllerTest, DevicesThatMatchLaterJoinTheCurrentWave) {
  ASSERT_TRUE(controller_->Create(Request("100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE), "a").ok());
  ASSERT_TRUE(controller_->Evaluate("r1").ok());
  EXPECT_EQ(DevicesOn("2.0").size(), static_cast<size_t>(kDevices));
  Enroll("dev-late", "a");
  ASSERT_TRUE(controller_->Evaluate("r1").ok());
  auto got = controller_->Get("r1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->state(), v1::ROLLOUT_STATE_RUNNING);
  EXPECT_EQ(got->waves(0).targeted(), static_cast<uint64_t>(kDevices + 1));
  EXPECT_EQ(got->matching_devices(), static_cast<uint64_t>(kDevices + 1));
  // A paused rollout takes nobody: the device joins when it resumes.
  ASSERT_TRUE(controller_->Act("r1", OperatorAction::kPause, "", "bob").ok());
  Enroll("dev-later", "b");
  ASSERT_TRUE(controller_->Evaluate("r1").ok());
  EXPECT_EQ(controller_->Get("r1")->waves(0).targeted(), static_cast<uint64_t>(kDevices + 1));
  ASSERT_TRUE(controller_->Act("r1", OperatorAction::kResume, "", "bob").ok());
  ASSERT_TRUE(controller_->Evaluate("r1").ok());
  EXPECT_EQ(controller_->Get("r1")->waves(0).targeted(), static_cast<uint64_t>(kDevices + 2));
}

// A device that starts matching a succeeded rollout later gets its version: the controller
// places it when it appears (here a label change), not by re-evaluating every finished rollout.
// A pass that could not take the rollout's lease leaves the device for the next pass.
TEST_F(ControllerTest, ADeviceRelabelledIntoASucceededRolloutsSelectorJoinsIt) {
  v1::CreateRolloutRequest request = Request("100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE);
  request.set_label_selector("hw=a");
  ASSERT_TRUE(controller_->Create(request, "alice").ok());
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  ASSERT_EQ(DevicesOn("2.0").size(), static_cast<size_t>(kDevices / 2));
  for (const std::string& id : DevicesOn("2.0")) Report(id, "2.0", true);
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  clock_.Advance(std::chrono::seconds(10));
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  ASSERT_EQ(State("r1"), v1::ROLLOUT_STATE_SUCCEEDED);
  ASSERT_EQ(Desired()["dev-0"].first, "1.0");

  ASSERT_TRUE(db_->Transact("test",
                            [&](Tx& tx) {
                              return devices_->UpdateLabels(tx, "dev-0", {{"hw", "a"}}, {});
                            })
                  .ok());
  absl::Status held = db_->Transact("hold", [&](Tx& tx) -> absl::Status {
    auto locked = rollouts_.Lock(tx, "r1", false);
    if (!locked.ok()) return locked.status();
    EXPECT_TRUE(controller_->EvaluateAll().ok());
    return absl::OkStatus();
  });
  ASSERT_TRUE(held.ok()) << held;
  EXPECT_EQ(Desired()["dev-0"].first, "1.0") << "the lease holder's turn";
  ASSERT_TRUE(controller_->EvaluateAll().ok());
  EXPECT_EQ(Desired()["dev-0"].first, "2.0");
  auto got = controller_->Get("r1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->state(), v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(got->matching_devices(), static_cast<uint64_t>(kDevices / 2 + 1));
}

// A one-wave deploy whose every device moved to a newer rollout of the model has nothing left to
// do: it ends as ABORTED, saying why, instead of holding RUNNING forever.
TEST_F(ControllerTest, ARolloutWhoseDevicesAllMovedToANewerOneEnds) {
  auto listed = controller_->List(PageRequest{});
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->items.size(), 1u);
  const std::string deploy = listed->items[0].name();
  ASSERT_EQ(State(deploy), v1::ROLLOUT_STATE_RUNNING);
  ASSERT_TRUE(controller_->Create(Request("100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE), "a").ok());
  ASSERT_TRUE(controller_->Evaluate("r1").ok());
  ASSERT_EQ(DevicesOn("2.0").size(), static_cast<size_t>(kDevices));

  ASSERT_TRUE(controller_->Evaluate(deploy).ok());
  auto got = controller_->Get(deploy);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state(), v1::ROLLOUT_STATE_ABORTED);
  ASSERT_GT(got->events_size(), 0);
  const v1::RolloutEvent& last = got->events(got->events_size() - 1);
  EXPECT_EQ(last.kind(), v1::ROLLOUT_EVENT_KIND_ABORTED);
  EXPECT_EQ(last.actor(), v1::ROLLOUT_ACTOR_CONTROLLER);
  EXPECT_NE(last.message().find("superseded"), std::string::npos) << last.message();
  // The newer rollout and the devices are untouched.
  EXPECT_EQ(State("r1"), v1::ROLLOUT_STATE_RUNNING);
  EXPECT_EQ(DevicesOn("2.0").size(), static_cast<size_t>(kDevices));
  // A rollout whose selector matches no device yet has targeted nobody: it waits, it is not
  // superseded.
  v1::CreateRolloutRequest waiting = Request("100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE);
  waiting.set_name("r-none-yet");
  waiting.set_label_selector("hw=not-yet");
  ASSERT_TRUE(controller_->Create(waiting, "a").ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(controller_->Evaluate("r-none-yet").ok());
  EXPECT_EQ(State("r-none-yet"), v1::ROLLOUT_STATE_RUNNING);
}

// An operator pause racing the controller's promotion: both take the rollout's lease, so the
// end is either "promoted, then paused in wave 1" or "paused in wave 0, never promoted", each
// with the devices and events that go with it.
TEST_F(ControllerTest, PauseRacingAPromotionEndsInOneConsistentState) {
  for (int round = 0; round < 5; ++round) {
    const std::string name = "race-" + std::to_string(round);
    v1::CreateRolloutRequest request = Request("20%,100%", v1::ROLLOUT_FAILURE_ACTION_PAUSE);
    request.set_name(name);
    ASSERT_TRUE(controller_->Create(request, "alice").ok());
    ASSERT_TRUE(controller_->Evaluate(name).ok());
    for (const std::string& id : DevicesOn("2.0")) Report(id, "2.0", true);
    ASSERT_TRUE(controller_->Evaluate(name).ok());  // the soak starts
    clock_.Advance(std::chrono::seconds(10));       // the promotion is due

    std::atomic<int> ready{0};
    auto wait_for_both = [&] {
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();
    };
    absl::Status evaluated;
    absl::StatusOr<v1::Rollout> paused;
    std::thread controller([&] {
      wait_for_both();
      evaluated = controller_->Evaluate(name);
    });
    std::thread operator_([&] {
      wait_for_both();
      paused = controller_->Act(name, OperatorAction::kPause, "race", "bob");
    });
    controller.join();
    operator_.join();
    ASSERT_TRUE(evaluated.ok()) << evaluated;
    ASSERT_TRUE(paused.ok()) << paused.status();

    auto got = controller_->Get(name);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->state(), v1::ROLLOUT_STATE_PAUSED);
    int promoted = 0;
    for (const auto& e : got->events()) promoted += e.kind() == v1::ROLLOUT_EVENT_KIND_PROMOTED;
    EXPECT_EQ(got->events().rbegin()->kind(), v1::ROLLOUT_EVENT_KIND_PAUSED);
    if (got->current_wave() == 1) {
      EXPECT_EQ(promoted, 1);
      EXPECT_EQ(got->waves(0).targeted() + got->waves(1).targeted(), 10u);
    } else {
      EXPECT_EQ(got->current_wave(), 0u);
      EXPECT_EQ(promoted, 0);
      EXPECT_EQ(got->waves(1).targeted(), 0u);
    }
    // The next round starts from the fleet on 1.0 again.
    ASSERT_TRUE(controller_->Act(name, OperatorAction::kRollBack, "", "bob").ok());
  }
}

}  // namespace
}  // namespace edgefleet::server::rollout
