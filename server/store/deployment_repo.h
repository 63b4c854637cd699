// DeploymentStore records deployments (a model version for a label selector), their per-device
// targets, and answers each device's desired state.
// DeploymentRepo is its PostgreSQL implementation; its mutating methods run in the caller's Tx.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/core/labels.h"
#include "edgefleet/v1/admin.pb.h"
#include "edgefleet/v1/device.pb.h"
#include "server/store/database.h"
#include "server/store/device_repo.h"
#include "server/store/model_repo.h"
#include "server/store/paging.h"

namespace edgefleet::server {

// A deployment with one page of its targets (ordered by device id).
struct DeploymentPage {
  v1::Deployment deployment;      // with its target counts
  std::string next_target_after;  // the device id to continue after; empty on the last page
};

// What a device's check-in read and wrote (DeploymentStore::CheckIn).
struct CheckInRecord {
  DeviceStore::DeviceIdentity identity;  // when the check-in ran
  // The certificate was the current one of an active device: the inventory was recorded and
  // `desired` is the device's desired state.
  bool recorded = false;
  std::vector<StoredVersion> desired;
};

class DeploymentStore {
 public:
  virtual ~DeploymentStore() = default;

  // A one-wave rollout (rollout::SingleWavePlan) named "deploy-ID", started at once: inserts a
  // PENDING target for every active device whose labels contain `selector` and marks those
  // devices' targets in older deployments of the same model SUPERSEDED. The rollout controller
  // assigns devices that match later. Answers with the target counts, without targets.
  // NotFound "model M version V not found". `capture` (validated, may be null) is what the
  // targeted devices are asked to capture.
  virtual absl::StatusOr<v1::Deployment> Create(Tx& tx, const std::string& model_name,
                                                const std::string& version,
                                                const std::string& label_selector_text,
                                                const Labels& selector, int64_t now_unix,
                                                const v1::CaptureSpec* capture = nullptr) = 0;
  // With its target counts and the targets whose device ids follow `targets.after`, at most
  // `targets.size` of them (a fleet can hold 100,000). NotFound "deployment X not found".
  virtual absl::StatusOr<DeploymentPage> Get(const std::string& deployment_id,
                                             const PageRequest& targets) = 0;
  // One page of deployments, oldest first, with their target counts but no targets: ids after
  // `page.after`; continues after the last id. InvalidArgument when `page.after` is not an id.
  virtual absl::StatusOr<Page<v1::Deployment>> ListPage(const PageRequest& page) = 0;
  // What the device should run, read from the targets the rollout component wrote (writes
  // nothing): per model, the version of the newest deployment with a live target for the device,
  // with that deployment's (release's) metadata version in meta.metadata_version rather than the
  // one fixed when the version was pushed; for a rolled back target, the version the device ran
  // before under the roll back's metadata version (then without the deployment's capture
  // request, which `capture` carries otherwise). Empty for a device that is not active;
  // NotFound "device X not found".
  virtual absl::StatusOr<std::vector<StoredVersion>> DesiredForDevice(
      Tx& tx, const std::string& device_id) = 0;
  // A device's check-in by the holder of the certificate with `certificate_serial_hex`, in one
  // statement of its own (no Tx). Reads the device's identity; when it is active and that is
  // its current certificate (`recorded`), stores the reported inventory, with last_seen, when it
  // differs from the stored one (check-ins batch last_seen otherwise: LastSeenBatcher,
  // DeviceStore::TouchLastSeen), and answers what DesiredForDevice answers. Otherwise writes and
  // reads nothing more: the caller decides from the identity (a renewed certificate's first use
  // is promoted, then the check-in runs again). NotFound for an unknown device.
  virtual absl::StatusOr<CheckInRecord> CheckIn(const std::string& device_id,
                                                const std::string& certificate_serial_hex,
                                                const v1::Inventory& inventory,
                                                int64_t now_unix) = 0;
  // Moves the device's targets in deployments of model+version to `state` (with `reason` when
  // FAILED). Superseded and rolled back targets stay so, and a late IN_PROGRESS/PENDING never
  // downgrades SERVING.
  virtual absl::Status UpdateTargetState(Tx& tx, const std::string& device_id,
                                         const std::string& model_name, const std::string& version,
                                         v1::DeploymentTargetState state, v1::FailureReason reason,
                                         const std::string& detail, int64_t now_unix) = 0;
};

// The PostgreSQL DeploymentStore.
class DeploymentRepo final : public DeploymentStore {
 public:
  explicit DeploymentRepo(Database& db) : db_(db) {}
  absl::StatusOr<v1::Deployment> Create(Tx& tx, const std::string& model_name,
                                        const std::string& version,
                                        const std::string& label_selector_text,
                                        const Labels& selector, int64_t now_unix,
                                        const v1::CaptureSpec* capture = nullptr) override;
  absl::StatusOr<DeploymentPage> Get(const std::string& deployment_id,
                                     const PageRequest& targets) override;
  absl::StatusOr<Page<v1::Deployment>> ListPage(const PageRequest& page) override;
  absl::StatusOr<std::vector<StoredVersion>> DesiredForDevice(
      Tx& tx, const std::string& device_id) override;
  absl::StatusOr<CheckInRecord> CheckIn(const std::string& device_id,
                                        const std::string& certificate_serial_hex,
                                        const v1::Inventory& inventory, int64_t now_unix) override;
  absl::Status UpdateTargetState(Tx& tx, const std::string& device_id,
                                 const std::string& model_name, const std::string& version,
                                 v1::DeploymentTargetState state, v1::FailureReason reason,
                                 const std::string& detail, int64_t now_unix) override;

 private:
  Database& db_;
};

}  // namespace edgefleet::server
