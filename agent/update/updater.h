// The update lifecycle for one desired model version, persisted after every step:
// Fetch (a patch against the held version, else the full artifact; resumable) -> Verify (signature,
// expiry, rollback, length, digest) -> Stage -> Activate (load in a new engine, warm up, swap) ->
// Commit. Any failure is reported with its reason, and the version that was serving keeps serving.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

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

class Updater {
 public:
  // Trusts only manifests signed by `keys` (the pinned root and the release key it delegated).
  Updater(StateStore& state, ModelHost& host, EngineFactory& engines, DeviceTransport& transport,
          const manifest::ReleaseKeyring& keys, const Clock& clock, std::string state_dir);
  // Trusts only manifests signed by `release_root` itself.
  Updater(StateStore& state, ModelHost& host, EngineFactory& engines, DeviceTransport& transport,
          const crypto::Verifier& release_root, const Clock& clock, std::string state_dir);

  // Loads every committed model from disk and serves it; needs no server.
  absl::Status RestoreFromDisk();

  // Brings `desired` into service. OK when it serves (or already served); otherwise the error,
  // which has been reported to the server (or queued for it) unless it is a repeat.
  absl::Status Apply(const v1::DesiredModel& desired);

  // What this device holds, for the check-in inventory.
  std::vector<v1::InstalledModel> InstalledModels();

  // Sends queued update events; they stay queued while the server is unreachable.
  absl::Status FlushEvents();

  // Reports that `desired` was not acted on because the check-in answer carrying it could not be
  // trusted (`why`); nothing is marked failed, so a trustworthy answer later is acted on.
  void ReportUntrusted(const v1::DesiredModel& desired, const absl::Status& why);

 private:
  // `keys` when given, else the keyring this updater owns.
  Updater(StateStore& state, ModelHost& host, EngineFactory& engines, DeviceTransport& transport,
          std::unique_ptr<manifest::ReleaseKeyring> own_keys, const manifest::ReleaseKeyring* keys,
          const Clock& clock, std::string state_dir);

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
  absl::Status Fail(const std::string& model, const std::string& version, const std::string& sha256,
                    const absl::Status& error, v1::FailureReason fallback);
  absl::Status Save(const v1::ReleaseManifest& manifest, StateStore::UpdatePhase phase);

  StateStore& state_;
  ModelHost& host_;
  EngineFactory& engines_;
  DeviceTransport& transport_;
  std::unique_ptr<manifest::ReleaseKeyring> own_keys_;  // set by the root-only constructor
  const manifest::ReleaseKeyring& keys_;
  const Clock& clock_;
  std::string state_dir_;

  std::mutex failures_mu_;
  std::map<std::string, v1::InstalledModel> last_failure_;  // by model name
};

}  // namespace edgefleet::agent
