// Executes the update lifecycle's transition table (lifecycle.h) for each desired model version:
// Fetching (a patch against the held version, else the full artifact; resumable) -> Verifying
// (signature, expiry, rollback, length, digest) -> Staged -> Activating (load in a new engine,
// warm up, commit, swap) -> Probation (probation.h) -> Committed, each state saved before it is
// entered. Any failure is reported with its reason, and the version that was serving keeps (or
// goes back to) serving. A refused release is tried again after a backoff, a bounded number of
// times; a release of the version kept as previous (an operator's rollback) is served from that
// copy without a download and without probation (it passed one before).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "agent/engine/inference_engine.h"
#include "agent/serving/model_host.h"
#include "agent/serving/version_monitor.h"
#include "agent/state/state_store.h"
#include "agent/update/device_transport.h"
#include "agent/update/lifecycle.h"
#include "agent/update/probation.h"
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

// One thread drives an Updater (the agent's check-in loop); requests served meanwhile reach it
// only through the VersionMonitor of each serving version.
// The reference profile of an offered release, when the signed manifest names one: NULLOPT when
// it names none (the version is binned by the default profile); a DIGEST verification failure
// when the answer's profile is missing, unusable or does not hash to the signed SHA-256.
absl::StatusOr<std::optional<v1::ReferenceProfile>> SignedReference(
    const v1::DesiredModel& desired, const v1::ReleaseManifest& manifest);

class Updater {
 public:
  // Trusts only manifests signed by `keys` (the pinned root and the release key it delegated).
  Updater(StateStore& state, ModelHost& host, EngineFactory& engines, DeviceTransport& transport,
          const manifest::ReleaseKeyring& keys, const Clock& clock, std::string state_dir,
          RetryPolicy retry = {}, ProbationPolicy probation = {});
  // Trusts only manifests signed by `release_root` itself.
  Updater(StateStore& state, ModelHost& host, EngineFactory& engines, DeviceTransport& transport,
          const crypto::Verifier& release_root, const Clock& clock, std::string state_dir,
          RetryPolicy retry = {}, ProbationPolicy probation = {});

  // Reads back the saved update states and acts on them (lifecycle.h: an activation the agent
  // died in is rolled back, a probation resumes, or is rolled back when the agent restarts in a
  // loop), then loads every committed model from disk and serves it; needs no server. A stored
  // model that fails its check is dropped and reported (DIGEST), the previous version serves
  // meanwhile if it verifies, and the next Apply of the release fetches it again. Returns the
  // first such error.
  absl::Status RestoreFromDisk();

  // The clock manifest expiry is judged by (the release trust's server-corrected time, so that a
  // device clock a day off does not refuse fresh manifests); by default the updater's clock.
  void SetManifestClock(const Clock& clock) { manifest_clock_ = &clock; }

  // Brings `desired` into service. OK when it serves (or already served), possibly still on
  // probation; otherwise the error, which has been reported to the server (or queued for it)
  // unless the release is waiting for its next attempt (FailedPrecondition, see Due). While a
  // version of the model is on probation another release of it waits (Unavailable).
  absl::Status Apply(const v1::DesiredModel& desired);

  // Judges every version on probation now: commits those that passed (reported ACTIVATED),
  // swaps back those that failed (reported FAILED with reason PROBATION_FAILED and the measured
  // numbers, counted as a failed attempt of the release).
  void CheckProbation();
  // Whether some version is on probation (the caller then calls CheckProbation often).
  bool OnProbation() const { return !watches_.empty(); }

  // Test seam: runs right after each state is saved, before its action (crash tests die there).
  void SetAfterSaveForTest(std::function<void(UpdateState)> hook) { after_save_ = std::move(hook); }

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

  // One update in flight: what the table's actions act on.
  struct Job {
    explicit Job(ReleaseId r) : release(std::move(r)) {}
    ReleaseId release;
    // From the offer; absent for an update read back at start-up (which never fetches).
    std::optional<v1::ReleaseManifest> manifest;
    const v1::DesiredModel* desired = nullptr;
    std::optional<StateStore::InstalledVersion> kept;  // the kept copy being reinstated
    // The release's reference profile, accepted because its SHA-256 is the signed one.
    std::optional<v1::ReferenceProfile> reference;
    std::string part_path;
    std::string staged_path;
    bool staged_here = false;                      // this attempt created the staging directory
    std::shared_ptr<const ServingModel> replaced;  // what served before the swap
    std::shared_ptr<VersionMonitor> monitor;       // the new version's
    uint32_t restarts = 0;
    absl::Status error;  // of the failed step being handled
    v1::FailureReason fallback = v1::FAILURE_REASON_LOAD;
    absl::Status result;  // what Drive returns
  };
  // A version on probation.
  struct Watch {
    ReleaseId release;
    // What served before, kept in memory for an instant swap back; null after a restart.
    std::shared_ptr<const ServingModel> previous;
    std::shared_ptr<VersionMonitor> monitor;
    std::optional<VersionMonitor::Snapshot> baseline;  // the previous version's, at the swap
    Clock::TimePoint started;
    uint32_t restarts = 0;
  };

  // Runs the table from `state` on `event` until an action ends the run; returns job.result.
  absl::Status Drive(Job& job, UpdateState state, UpdateEvent event);
  // Runs one action; the event it produced, or nothing when the run ends.
  std::optional<UpdateEvent> Execute(UpdateAction action, Job& job);
  absl::Status SaveState(const Job& job, UpdateState state);
  UpdateEvent Fetch(Job& job);
  UpdateEvent Stage(Job& job);
  UpdateEvent Activate(Job& job);
  void StartWatch(Job& job);
  std::optional<UpdateEvent> ResumeProbation(Job& job);
  void RollBack(Job& job);
  void Judge(const std::string& model);
  UpdateEvent StepFailed(Job& job, const absl::Status& error, v1::FailureReason fallback);

  // Verifies the stored artifact of `v`, loads, warms up and serves it.
  absl::Status Serve(const StateStore::InstalledVersion& v);
  // After `v` failed Serve at start-up: serves the previous version if it verifies, forgets `v`
  // so that it is fetched again, and reports why.
  void Repair(const StateStore::InstalledVersion& v, const absl::Status& error);
  // Clears the failure record and reports the activation.
  void Succeeded(const ReleaseId& release);
  std::chrono::seconds Backoff(uint32_t attempts) const;
  // Removes the directory holding a version's artifact (best effort: an orphaned directory only
  // costs disk space and is reused by StagingDir).
  static void RemoveVersionFiles(const std::string& artifact_path);
  // `keys` when given, else the keyring this updater owns.
  Updater(StateStore& state, ModelHost& host, EngineFactory& engines, DeviceTransport& transport,
          std::unique_ptr<manifest::ReleaseKeyring> own_keys, const manifest::ReleaseKeyring* keys,
          const Clock& clock, std::string state_dir, RetryPolicy retry, ProbationPolicy probation);

  // Downloads the blob `sha256` of exactly `size_bytes` into `path`, resuming from the bytes
  // already there, and verifies its digest. Reasons: DOWNLOAD (transient), OVERSIZE, LENGTH,
  // DIGEST.
  absl::Status Download(const std::string& sha256, uint64_t size_bytes, const std::string& path);
  // Rebuilds the new artifact at `part_path` from the held version and the offered patch.
  absl::Status ApplyPatch(const v1::ReleaseManifest& manifest, const v1::PatchOffer& patch,
                          const std::string& held_path, const std::string& part_path);
  void Report(const std::string& model, const std::string& version, v1::UpdateEventKind kind,
              v1::FailureReason reason = v1::FAILURE_REASON_UNSPECIFIED,
              const std::string& detail = "");
  // Records and reports a failed attempt (counting it unless it is transient) and returns the
  // error to give the caller.
  absl::Status Fail(const ReleaseId& release, const absl::Status& error,
                    v1::FailureReason fallback);

  StateStore& state_;
  ModelHost& host_;
  EngineFactory& engines_;
  DeviceTransport& transport_;
  std::unique_ptr<manifest::ReleaseKeyring> own_keys_;  // set by the root-only constructor
  const manifest::ReleaseKeyring& keys_;
  const Clock& clock_;
  const Clock* manifest_clock_ = &clock_;
  std::string state_dir_;
  RetryPolicy retry_;
  ProbationPolicy probation_;
  std::map<std::string, Watch> watches_;  // by model name
  std::function<void(UpdateState)> after_save_;
};

}  // namespace edgefleet::agent
