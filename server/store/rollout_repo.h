// RolloutStore keeps staged rollouts: their definitions, where each stands (its progress), their
// decision events, and the per-device targets its waves assign. A rollout owns one deployments
// row (model version, selector, release metadata version); deployment_targets is the one table of
// per-device desired state, which check-in only reads (DeploymentStore::DesiredForDevice).
// RolloutRepo is its PostgreSQL implementation; every method runs in the caller's Tx.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "edgefleet/v1/rollout.pb.h"
#include "server/rollout/decision.h"
#include "server/rollout/membership.h"
#include "server/store/database.h"
#include "server/store/paging.h"

namespace edgefleet::server {

struct StoredRollout {
  // The definition (name, model, version, selector, on_failure, waves[i].spec) with the stored
  // state, current wave, promote_requested, matching devices, description, created_by and times.
  v1::Rollout rollout;
  rollout::RolloutProgress progress;
  int64_t deployment_id = 0;
};

// What one pass of the controller evaluates.
struct RolloutsToEvaluate {
  // By name: every PENDING and RUNNING rollout, and the SUCCEEDED ones a queued device now
  // matches (only the newest succeeded rollout per model and selector).
  std::vector<std::string> names;
  // The device placement queue entries `names` covers: forget them (ForgetPlacements) once
  // every name was evaluated, so a failed or skipped evaluation is tried again.
  std::vector<int64_t> placements;
};

class RolloutStore {
 public:
  virtual ~RolloutStore() = default;

  // Stores `definition` (NewRollout of a validated definition) PENDING with its deployments
  // row, whose release metadata version comes from the one counter (so it is higher than every
  // release before it). AlreadyExists "rollout N already exists"; NotFound "model M version V
  // not found".
  virtual absl::StatusOr<StoredRollout> Insert(Tx& tx, const v1::Rollout& definition,
                                               const std::string& created_by, int64_t now_unix) = 0;
  // Reads the rollout and locks its row until `tx` ends: the lease under which the controller
  // and operator actions change it. With `skip_locked`, nullopt while another transaction holds
  // it; without, waits for it. NotFound "rollout N not found".
  virtual absl::StatusOr<std::optional<StoredRollout>> Lock(Tx& tx, const std::string& name,
                                                            bool skip_locked) = 0;
  // Reads without locking. NotFound "rollout N not found".
  virtual absl::StatusOr<StoredRollout> Find(Tx& tx, const std::string& name) = 0;
  // Rollouts by name after `page.after`.
  virtual absl::StatusOr<Page<StoredRollout>> ListPage(Tx& tx, const PageRequest& page) = 0;
  // The rollouts the controller evaluates: PENDING and RUNNING ones (their late devices join
  // their current wave), and the SUCCEEDED ones that a device queued for placement now matches
  // (it joins their last wave). A device is queued when it becomes active or its labels change
  // (migration 0007), so a pass does not grow with the number of finished rollouts. At most
  // `max_placements` queue entries at a time, oldest first.
  virtual absl::StatusOr<RolloutsToEvaluate> NamesToEvaluate(Tx& tx, size_t max_placements) = 0;
  // Removes these device placement queue entries.
  virtual absl::Status ForgetPlacements(Tx& tx, const std::vector<int64_t>& placements) = 0;
  virtual absl::Status SaveProgress(Tx& tx, const std::string& name,
                                    const rollout::RolloutProgress& progress,
                                    uint64_t matching_devices, int64_t now_unix) = 0;
  virtual absl::Status AddEvent(Tx& tx, const std::string& name, const v1::RolloutEvent& event) = 0;
  // Oldest first.
  virtual absl::StatusOr<std::vector<v1::RolloutEvent>> Events(Tx& tx, const std::string& name) = 0;
  virtual absl::StatusOr<std::optional<v1::RolloutEvent>> LastEvent(Tx& tx,
                                                                    const std::string& name) = 0;
  // Each wave's targets by outcome at `now_unix` (waves.size() == serving_timeouts.size()):
  // FAILED with a refusal reason (signature, expiry, rollback, naming) counts as refused, with
  // PROBATION_FAILED as a probation failure, any other FAILED as an install failure; a target
  // neither serving nor failed for at least its wave's serving timeout has timed out. Superseded
  // targets are not counted.
  virtual absl::StatusOr<std::vector<rollout::WaveCounts>> CountWaves(
      Tx& tx, int64_t deployment_id, const std::vector<std::chrono::seconds>& serving_timeouts,
      int64_t now_unix) = 0;
  // The active devices the rollout's selector matches, `assigned` when they have a target in its
  // deployment. Devices already targeted by a newer deployment of the same model are left out:
  // an older rollout never takes a device from a newer one.
  virtual absl::StatusOr<std::vector<rollout::MatchingDevice>> MatchingDevices(
      Tx& tx, int64_t deployment_id) = 0;
  // Targets `device_ids` in wave `wave` of the deployment (PENDING, or SERVING for a device whose
  // last check-in reported serving the version already; targeted now), recording the
  // version each ran before (its target of an older deployment of the same model) and
  // superseding that older target.
  virtual absl::Status Assign(Tx& tx, int64_t deployment_id, uint32_t wave,
                              const std::vector<std::string>& device_ids, int64_t now_unix) = 0;
  // Sends every target of the deployment back to the version its device ran before, under a
  // newly minted (higher) release metadata version. Targets with no previous
  // version are rolled back to nothing (the device keeps what it runs). A rolled back target
  // keeps its state (the wave's counts stay as they were); device events no longer move it.
  // Answers how many.
  virtual absl::StatusOr<uint64_t> RollBack(Tx& tx, int64_t deployment_id, int64_t now_unix) = 0;
  // Whether the deployment ever targeted a device (superseded targets included).
  virtual absl::StatusOr<bool> HasTargets(Tx& tx, int64_t deployment_id) = 0;
  // Rollouts by state and targets (of every deployment) by state ("rolled_back" for rolled back
  // ones), lower-case names, for metrics.
  virtual absl::StatusOr<std::map<std::string, uint64_t>> CountRolloutsByState(Tx& tx) = 0;
  virtual absl::StatusOr<std::map<std::string, uint64_t>> CountTargetsByState(Tx& tx) = 0;
};

// The PostgreSQL RolloutStore.
class RolloutRepo final : public RolloutStore {
 public:
  absl::StatusOr<StoredRollout> Insert(Tx& tx, const v1::Rollout& definition,
                                       const std::string& created_by, int64_t now_unix) override;
  absl::StatusOr<std::optional<StoredRollout>> Lock(Tx& tx, const std::string& name,
                                                    bool skip_locked) override;
  absl::StatusOr<StoredRollout> Find(Tx& tx, const std::string& name) override;
  absl::StatusOr<Page<StoredRollout>> ListPage(Tx& tx, const PageRequest& page) override;
  absl::StatusOr<RolloutsToEvaluate> NamesToEvaluate(Tx& tx, size_t max_placements) override;
  absl::Status ForgetPlacements(Tx& tx, const std::vector<int64_t>& placements) override;
  absl::Status SaveProgress(Tx& tx, const std::string& name,
                            const rollout::RolloutProgress& progress, uint64_t matching_devices,
                            int64_t now_unix) override;
  absl::Status AddEvent(Tx& tx, const std::string& name, const v1::RolloutEvent& event) override;
  absl::StatusOr<std::vector<v1::RolloutEvent>> Events(Tx& tx, const std::string& name) override;
  absl::StatusOr<std::optional<v1::RolloutEvent>> LastEvent(Tx& tx,
                                                            const std::string& name) override;
  absl::StatusOr<std::vector<rollout::WaveCounts>> CountWaves(
      Tx& tx, int64_t deployment_id, const std::vector<std::chrono::seconds>& serving_timeouts,
      int64_t now_unix) override;
  absl::StatusOr<std::vector<rollout::MatchingDevice>> MatchingDevices(
      Tx& tx, int64_t deployment_id) override;
  absl::Status Assign(Tx& tx, int64_t deployment_id, uint32_t wave,
                      const std::vector<std::string>& device_ids, int64_t now_unix) override;
  absl::StatusOr<uint64_t> RollBack(Tx& tx, int64_t deployment_id, int64_t now_unix) override;
  absl::StatusOr<bool> HasTargets(Tx& tx, int64_t deployment_id) override;
  absl::StatusOr<std::map<std::string, uint64_t>> CountRolloutsByState(Tx& tx) override;
  absl::StatusOr<std::map<std::string, uint64_t>> CountTargetsByState(Tx& tx) override;
};

}  // namespace edgefleet::server
