// The update lifecycle for one desired model version, persisted after every step:
// Fetch (a patch against the held version, else the full artifact; resumable) -> Verify (signature,
// expiry, rollback, length, digest) -> Stage -> Activate (load in a new engine, warm up, swap) ->
// Commit. Any failure is reported with its reason, and the version that was serving keeps serving.
// A refused release is tried again after a backoff, a bounded number of times; a release of the
// version kept as previous (an operator's rollback) is served from that copy without a download.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "agent/engine/inference_engine.h"
#include "agent/serving/model_host.h"
#include "agent/state/state_store.h"
#include "agent/update/device_transport.h"
#include "common/core/clock.h"
#include "common/crypto/signer.h"
#include "common/manifest/trust.h"
#include "edgefleet/v1/device.pb.h"

namespace edgefleet::agent {

// How a refused release is retried. The n-th failed attempt waits base_backoff * 2^(n-1), at most
// max_backoff, before the next; after max_attempts failures the release is not tried again until
// the server offers another one (another version, digest or metadata version: a redeployment
// issues a new metadata version). Transient failures (DOWNLOAD, EXPIRED) are retried at the next
// check-in and do not count.
struct RetryPolicy {
  std::chrono::seconds base_backoff{30};
  std::chrono::seconds max_backoff{std::chrono::hours(1)};
  uint32_t max_attempts = 5;
};

class Updater {
 public:
  // Trusts only manifests signed by `keys` (the pinned root and the release key it delegated).
  Updater(StateStore& state, ModelHost& host, EngineFactory& engines, DeviceTransport& transport,
          const manifest::ReleaseKeyring& keys, const Clock& clock, std::string state_dir,
          RetryPolicy retry = {});
  // Trusts only manifests signed by `release_root` itself.
  Updater(StateStore& state, ModelHost& host, EngineFactory& engines, DeviceTransport& transport,
          const crypto::Verifier& release_root, const Clock& clock, std::string state_dir,
          RetryPolicy retry = {});

  // Loads every committed model from disk and serves it; needs no server. A stored model that
  // fails its check is dropped and reported (DIGEST), the previous version serves meanwhile if it
  // verifies, and the next Apply of the release fetches it again. Returns the first such error.
  absl::Status RestoreFromDisk();

  // Brings `desired` into service. OK when it serves (or already served); otherwise the error,
  // which has been reported to the server (or queued for it) unless the release is waiting for
  // its next attempt (FailedPrecondition, see Due).
  absl::Status Apply(const v1::DesiredModel& desired);

  // OK when Apply would attempt `desired` now; FailedPrecondition saying why not when it failed
  // before and waits for its backoff or has used up its attempts.
  absl::Status Due(const v1::DesiredModel& desired);

  // What this device holds, for the check-in inventory.
  std::vector<v1::InstalledModel> InstalledModels();

  // Sends queued update events; they stay queued while the server is unreachable.
  absl::Status FlushEvents();

  // Reports that `desired` was not acted on because the check-in answer carrying it could not be
  // trusted (`why`); nothing is marked failed, so a trustworthy answer later is acted on.
  void ReportUntrusted(const v1::DesiredModel& desired, const absl::Status& why);

 private:
  // What names a release for retries: an offer of another version, digest or metadata version is
  // a new release with fresh attempts.
  struct ReleaseId {
    std::string model;
    std::string version;
    std::string sha256;  // raw
    uint64_t metadata_version = 0;
    // Whether `failure` was recorded for this very release (its model is the caller's).
    bool Names(const StateStore::UpdateFailure& failure) const {
      return failure.version == version && failure.artifact_sha256 == sha256 &&
             failure.metadata_version == metadata_version;
    }
  };
  static ReleaseId ReleaseIdOf(const v1::DesiredModel& desired);

  // Verifies the stored artifact of `v`, loads, warms up and serves it.
  absl::Status Serve(const StateStore::InstalledVersion& v);
  // After `v` failed Serve at start-up: serves the previous version if it verifies, forgets `v`
  // so that it is fetched again, and reports why.
  void Repair(const StateStore::InstalledVersion& v, const absl::Status& error);
  // Activates the copy kept as previous when `manifest` names it; NotFound when there is none
  // (or it no longer verifies), so the caller downloads instead.
  absl::Status ActivateKeptCopy(const ReleaseId& release, const v1::ReleaseManifest& manifest,
                                const v1::DesiredModel& desired);
  // Clears the failure record and reports the activation.
  void Succeeded(const ReleaseId& release);
  std::chrono::seconds Backoff(uint32_t attempts) const;
  // Removes the directory holding a version's artifact (best effort: an orphaned directory only
  // costs disk space and is reused by StagingDir).
  static void RemoveVersionFiles(const std::string& artifact_path);
  // `keys` when given, else the keyring this updater owns.
  Updater(StateStore& state, ModelHost& host, EngineFactory& engines, DeviceTransport& transport,
          std::unique_ptr<manifest::ReleaseKeyring> own_keys, const manifest::ReleaseKeyring* keys,
          const Clock& clock, std::string state_dir, RetryPolicy retry);

  // Downloads the blob `sha256` of exactly `size_bytes` into `path`, resuming from the bytes
  // already there, and verifies its digest. Reasons: DOWNLOAD (transient), OVERSIZE, LENGTH,
  // DIGEST.
  absl::Status Download(const std::string& sha256, uint64_t size_bytes, const std::string& path);
  // Rebuilds the new artifact at `part_path` from the held version and the offered patch.
  absl::Status ApplyPatch(const v1::ReleaseManifest& manifest, const v1::PatchOffer& patch,
                          const std::string& held_path, const std::string& part_path);
  absl::Status Activate(const v1::ReleaseManifest& manifest,
                        const v1::SignedManifest& signed_manifest, const v1::ModelVersion& metadata,
                        const std::string& staged_path);
  void Report(const std::string& model, const std::string& version, v1::UpdateEventKind kind,
              v1::FailureReason reason = v1::FAILURE_REASON_UNSPECIFIED,
              const std::string& detail = "");
  // Records and reports a failed attempt (counting it unless it is transient) and returns the
  // error to give the caller.
  absl::Status Fail(const ReleaseId& release, const absl::Status& error,
                    v1::FailureReason fallback);
  absl::Status Save(const v1::ReleaseManifest& manifest, StateStore::UpdatePhase phase);

  StateStore& state_;
  ModelHost& host_;
  EngineFactory& engines_;
  DeviceTransport& transport_;
  std::unique_ptr<manifest::ReleaseKeyring> own_keys_;  // set by the root-only constructor
  const manifest::ReleaseKeyring& keys_;
  const Clock& clock_;
  std::string state_dir_;
  RetryPolicy retry_;
};

}  // namespace edgefleet::agent
