// In-memory RolloutStore and AuditStore, and a Transactor that rolls them back when a
// transaction fails: the controller's logic tested without PostgreSQL. Every device matches every
// rollout's selector when its labels contain it; all rollouts are of one model. The PostgreSQL
// RolloutRepo has its own tests (tests/server/store).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/core/labels.h"
#include "edgefleet/v1/admin.pb.h"
#include "edgefleet/v1/device.pb.h"
#include "edgefleet/v1/telemetry.pb.h"
#include "server/store/audit_repo.h"
#include "server/store/inference_sample_repo.h"
#include "server/store/rollout_repo.h"

namespace edgefleet::server::rollout::testing {

struct FakeTarget {
  std::string device_id;
  int64_t deployment_id = 0;
  uint32_t wave = 0;
  v1::DeploymentTargetState state = v1::DEPLOYMENT_TARGET_STATE_PENDING;
  v1::FailureReason reason = v1::FAILURE_REASON_UNSPECIFIED;
  int64_t targeted_at = 0;
  bool superseded = false;
  bool rolled_back = false;
  std::string previous_version;  // what the device ran before (FakeRolloutData.running)
};

// A telemetry window a device sent (of the one model).
struct FakeWindow {
  std::string device_id;
  std::string version;
  int64_t start_unix = 0;
  v1::TelemetryWindow window;
};

struct FakeRolloutData {
  std::map<std::string, StoredRollout> rollouts;
  std::map<std::string, std::vector<v1::RolloutEvent>> events;
  std::vector<FakeTarget> targets;
  std::map<std::string, Labels> devices;  // all active
  std::vector<std::string> audit;         // "actor action"
  int64_t next_deployment_id = 1;
  // The version a device runs before any rollout targets it (its previous version when first
  // assigned); absent: none (a first install).
  std::map<std::string, std::string> running;
  std::vector<FakeWindow> windows;
};

class FakeRolloutStores final : public RolloutStore,
                                public AuditStore,
                                public InferenceSampleSource {
 public:
  FakeRolloutData data;
  std::set<std::string> leased_elsewhere;  // rollouts whose lease another replica holds
  // Sample calls: (version, device ids, from, to).
  struct SampleCall {
    std::string version;
    std::vector<std::string> device_ids;
    int64_t from_unix = 0;
    int64_t to_unix = 0;
  };
  std::vector<SampleCall> sample_calls;

  // A device's agent reporting on its live target.
  void Report(const std::string& device_id, v1::DeploymentTargetState state,
              v1::FailureReason reason = v1::FAILURE_REASON_UNSPECIFIED);
  // The device's live target (not superseded), if any.
  const FakeTarget* LiveTarget(const std::string& device_id) const;

  absl::StatusOr<StoredRollout> Insert(Tx& tx, const v1::Rollout& definition,
                                       const std::string& created_by, int64_t now_unix) override;
  absl::StatusOr<std::optional<StoredRollout>> Lock(Tx& tx, const std::string& name,
                                                    bool skip_locked) override;
  absl::StatusOr<StoredRollout> Find(Tx& tx, const std::string& name) override;
  absl::StatusOr<Page<StoredRollout>> ListPage(Tx& tx, const PageRequest& page) override;
  absl::StatusOr<RolloutsToEvaluate> NamesToEvaluate(Tx& tx, size_t max_placements) override;
  absl::Status ForgetPlacements(Tx& tx, const std::vector<int64_t>& placements) override;
  absl::Status SaveProgress(Tx& tx, const std::string& name, const RolloutProgress& progress,
                            uint64_t matching_devices, int64_t now_unix) override;
  absl::Status AddEvent(Tx& tx, const std::string& name, const v1::RolloutEvent& event) override;
  absl::StatusOr<std::vector<v1::RolloutEvent>> Events(Tx& tx, const std::string& name) override;
  absl::StatusOr<std::optional<v1::RolloutEvent>> LastEvent(Tx& tx,
                                                            const std::string& name) override;
  absl::StatusOr<std::vector<WaveCounts>> CountWaves(
      Tx& tx, int64_t deployment_id, const std::vector<std::chrono::seconds>& serving_timeouts,
      int64_t now_unix) override;
  absl::StatusOr<std::vector<MatchingDevice>> MatchingDevices(Tx& tx,
                                                              int64_t deployment_id) override;
  absl::Status Assign(Tx& tx, int64_t deployment_id, uint32_t wave,
                      const std::vector<std::string>& device_ids, int64_t now_unix) override;
  absl::StatusOr<uint64_t> RollBack(Tx& tx, int64_t deployment_id, int64_t now_unix) override;
  absl::StatusOr<bool> HasTargets(Tx& tx, int64_t deployment_id) override;
  absl::StatusOr<std::map<std::string, uint64_t>> CountRolloutsByState(Tx& tx) override;
  absl::StatusOr<std::map<std::string, uint64_t>> CountTargetsByState(Tx& tx) override;

  absl::Status Record(Tx& tx, const std::string& actor, const std::string& action,
                      const std::string& detail_json) override;

  absl::StatusOr<std::vector<Canary>> WaveCanaries(Tx& tx, int64_t deployment_id,
                                                   uint32_t wave) override;
  absl::StatusOr<InferenceSide> Sample(Tx& tx, const std::string& model_name,
                                       const std::string& version,
                                       const std::vector<std::string>& device_ids,
                                       int64_t from_unix, int64_t to_unix) override;
};

// Runs each transaction on `stores`, restoring their data when it fails. Every transaction's
// body first runs `retries` extra times, each attempt rolled back as after a serialization
// failure (Transact's contract).
class FakeTransactor final : public Transactor {
 public:
  explicit FakeTransactor(FakeRolloutStores& stores) : stores_(stores) {}
  int retries = 0;

 protected:
  absl::Status Run(absl::string_view name, const std::function<absl::Status(Tx&)>& body) override;

 private:
  FakeRolloutStores& stores_;
};

}  // namespace edgefleet::server::rollout::testing
