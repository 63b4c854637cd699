// The device API's behaviour for enrolled devices: check-ins answered with signed desired
// state, update events, telemetry and artifact access. The gRPC adapter resolves the caller's
// identity from its mTLS certificate before calling in.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "common/core/bounded_cache.h"
#include "common/core/clock.h"
#include "common/crypto/signer.h"
#include "edgefleet/v1/device.pb.h"
#include "server/api/signed_manifest_cache.h"
#include "server/artifacts/artifact_store.h"
#include "server/capture/capture_service.h"
#include "server/metrics/server_metrics.h"
#include "server/patches/patch_service.h"
#include "server/store/deployment_repo.h"
#include "server/store/device_repo.h"
#include "server/store/event_repo.h"
#include "server/store/last_seen_batcher.h"
#include "server/store/model_repo.h"
#include "server/store/reference_repo.h"
#include "server/store/telemetry_repo.h"
#include "server/telemetry/ingest.h"

namespace edgefleet::server {

struct DeviceApiOptions {
  std::chrono::seconds check_in_interval{30};
  std::chrono::seconds manifest_ttl{24 * 3600};
  // The root's delegation of the release key, sent with every answer; the answer's signed
  // timestamp expires after manifest_ttl like its manifests.
  v1::SignedDelegation delegation;
  // What telemetry windows are accepted (clock skew, retention).
  telemetry::WindowCheckPolicy telemetry_windows{};
};

// A check-in, an event report and a telemetry upload each write in one transaction of `db`; a
// check-in where nothing changed writes nothing but its time in `last_seen`'s next batch.
struct DeviceRepos {
  Transactor& db;
  DeviceStore& devices;
  ModelStore& models;
  DeploymentStore& deployments;
  EventStore& events;
  TelemetryStore& telemetry;
  LastSeenBatcher& last_seen;
  // Reference profiles; null: answers carry none (every version is binned by the default).
  ReferenceStore* references = nullptr;
};

class DeviceApi {
 public:
  // `patches` may be null: then only full artifacts are offered. `captures` may be null: then
  // UploadCapture answers Unavailable.
  DeviceApi(DeviceRepos repos, ArtifactStore& artifacts, const crypto::Signer& release_signer,
            const Clock& clock, ServerMetrics& metrics, DeviceApiOptions options,
            PatchService* patches = nullptr, PatchStore* patch_repo = nullptr,
            capture::CaptureService* captures = nullptr);

  // Confirms the certificate's subject is an active device holding that certificate (its
  // current one, or a renewed one, which then becomes the current one).
  absl::Status Authorize(const std::string& device_id, const std::string& certificate_serial_hex);

  // Authorizes the holder of the certificate (as Authorize does) from what the check-in itself
  // reads: one statement for the whole check-in.
  absl::StatusOr<v1::CheckInResponse> CheckIn(const std::string& device_id,
                                              const std::string& certificate_serial_hex,
                                              const v1::CheckInRequest& request);
  absl::Status ReportEvent(const std::string& device_id, const v1::ReportEventRequest& request);
  // Stores the per-model summaries and the windows (TelemetryIngest::Ingest): the answer lists
  // the windows stored, now or before, and those refused for good.
  absl::StatusOr<v1::UploadTelemetryResponse> UploadTelemetry(
      const std::string& device_id, const v1::UploadTelemetryRequest& request);
  // Stores captured requests (CaptureService::Ingest): the answer lists those stored, now or
  // before, and those refused for good.
  absl::StatusOr<v1::UploadCaptureResponse> UploadCapture(const std::string& device_id,
                                                          const v1::UploadCaptureRequest& request);
  struct ArtifactStream {
    std::unique_ptr<ArtifactReader> reader;
    const char* kind;          // "full" or "patch"
    uint64_t saved_bytes = 0;  // patch: full size minus patch size, once served whole
  };
  // Opens a model artifact or a ready patch that the device may fetch (DeviceRepo::
  // MayFetchArtifact); NotFound "no such artifact" for any other digest, existing or not.
  absl::StatusOr<ArtifactStream> OpenArtifact(const std::string& device_id,
                                              const std::string& sha256);

  ServerMetrics& metrics() { return metrics_; }
  telemetry::TelemetryIngest& telemetry() { return telemetry_ingest_; }

 private:
  // Authorize's decision on the identity read for the device (promotes a renewed certificate at
  // its first use).
  absl::Status Admit(const std::string& device_id, const std::string& certificate_serial_hex,
                     const absl::StatusOr<DeviceStore::DeviceIdentity>& identity);
  // Adds the delegation and the signed timestamp binding this answer's manifests.
  absl::Status StampAnswer(const std::string& device_id, Clock::TimePoint now,
                           v1::CheckInResponse* response) const;

  // The version's uploaded profile (nullopt: it has none). Uploaded profiles are written with
  // the version and never change, so both answers are cached (bounded, cleared when full).
  absl::StatusOr<std::shared_ptr<const std::optional<v1::ReferenceProfile>>> UploadedReference(
      const std::string& model, const std::string& version);

  DeviceRepos repos_;
  BoundedCache<std::pair<std::string, std::string>,
               std::shared_ptr<const std::optional<v1::ReferenceProfile>>>
      uploaded_references_{4096};  // by (model, version)
  ArtifactStore& artifacts_;
  const crypto::Signer& release_signer_;
  const Clock& clock_;
  ServerMetrics& metrics_;
  DeviceApiOptions options_;
  uint64_t delegation_version_ = 0;  // of options_.delegation; 0 when there is none
  PatchService* patches_;
  PatchStore* patch_repo_;
  telemetry::TelemetryIngest telemetry_ingest_;
  capture::CaptureService* captures_;
  SignedManifestCache manifests_;  // signed with release_signer_
};

}  // namespace edgefleet::server
