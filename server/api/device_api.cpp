#include "server/api/device_api.h"

#include "absl/strings/str_cat.h"
#include "common/core/logging.h"
#include "common/manifest/manifest.h"
#include "common/manifest/trust.h"
#include "server/api/request_limits.h"

namespace edgefleet::server {
namespace {

v1::DeploymentTargetState TargetStateFor(v1::UpdateEventKind kind) {
  switch (kind) {
    case v1::UPDATE_EVENT_KIND_ACTIVATED:
      return v1::DEPLOYMENT_TARGET_STATE_SERVING;
    case v1::UPDATE_EVENT_KIND_FAILED:
      return v1::DEPLOYMENT_TARGET_STATE_FAILED;
    default:
      return v1::DEPLOYMENT_TARGET_STATE_IN_PROGRESS;
  }
}

}  // namespace

DeviceApi::DeviceApi(DeviceRepos repos, ArtifactStore& artifacts,
                     const crypto::Signer& release_signer, const Clock& clock,
                     ServerMetrics& metrics, DeviceApiOptions options, PatchService* patches,
                     PatchStore* patch_repo, capture::CaptureService* captures)
    : repos_(repos),
      artifacts_(artifacts),
      release_signer_(release_signer),
      clock_(clock),
      metrics_(metrics),
      options_(options),
      patches_(patches),
      patch_repo_(patch_repo),
      telemetry_ingest_(repos_.db, repos_.telemetry, clock_, metrics_, options_.telemetry_windows),
      captures_(captures),
      // Reused for at most a minute, and never for more than 1% of their lifetime.
      manifests_(release_signer, options_.manifest_ttl,
                 std::min(std::chrono::seconds(60), options_.manifest_ttl / 100)) {
  // Decoded once: every check-in answer's timestamp names the delegation's version.
  if (auto d = manifest::DecodeCanonicalDelegation(options_.delegation.canonical_delegation());
      d.ok()) {
    delegation_version_ = d->delegation_version();
  }
}

absl::Status DeviceApi::Authorize(const std::string& device_id,
                                  const std::string& certificate_serial_hex) {
  return Admit(device_id, certificate_serial_hex, repos_.devices.Identity(device_id));
}

absl::Status DeviceApi::Admit(const std::string& device_id,
                              const std::string& certificate_serial_hex,
                              const absl::StatusOr<DeviceStore::DeviceIdentity>& identity) {
  if (absl::IsNotFound(identity.status())) {
    return absl::PermissionDeniedError(absl::StrCat("device ", device_id, " is not enrolled"));
  }
  if (!identity.ok()) return identity.status();
  if (identity->status != v1::DEVICE_STATUS_ACTIVE) {
    return absl::PermissionDeniedError(absl::StrCat(
        "device ", device_id, " is ",
        identity->status == v1::DEVICE_STATUS_DECOMMISSIONED ? "decommissioned" : "not active"));
  }
  if (identity->certificate_serial == certificate_serial_hex) return absl::OkStatus();
  // The first use of a renewed certificate retires the one it renewed.
  if (!identity->pending_certificate_serial.empty() &&
      identity->pending_certificate_serial == certificate_serial_hex) {
    auto promoted = repos_.db.Transact("promote renewed certificate", [&](Tx& tx) {
      return repos_.devices.PromoteCertificate(tx, device_id, certificate_serial_hex);
    });
    if (!promoted.ok()) return promoted.status();
    if (*promoted) {
      Logger("device")->info("renewed certificate in use device={} serial={}", device_id,
                             certificate_serial_hex);
    }
    return absl::OkStatus();
  }
  // A re-enrolled or renewed device's older certificates are no longer accepted.
  return absl::PermissionDeniedError(
      absl::StrCat("certificate of device ", device_id, " has been replaced"));
}

absl::StatusOr<v1::CheckInResponse> DeviceApi::CheckIn(const std::string& device_id,
                                                       const std::string& certificate_serial_hex,
                                                       const v1::CheckInRequest& request) {
  if (auto s = CheckRequestLimits(request); !s.ok()) return s;
  const auto now = clock_.Now();
  const int64_t now_unix = ToUnixSeconds(now);
  // The caller is authorized by the identity the check-in statement read (Admit, as Authorize
  // does for other calls). It writes the inventory only when it changed, and only for the
  // current certificate of an active device; last_seen goes to the batch once it succeeded. A
  // read of the targets otherwise: they move only through device events (ReportEvent).
  auto record =
      repos_.deployments.CheckIn(device_id, certificate_serial_hex, request.inventory(), now_unix);
  if (record.ok() && !record->recorded) {
    // Refused, or a renewed certificate's first use, which Admit promotes: then once more.
    if (auto s = Admit(device_id, certificate_serial_hex, record->identity); !s.ok()) return s;
    record = repos_.deployments.CheckIn(device_id, certificate_serial_hex, request.inventory(),
                                        now_unix);
  }
  // An unknown device is "not enrolled" (Admit); a database error stays what it is.
  if (!record.ok()) return Admit(device_id, certificate_serial_hex, record.status());
  if (!record->recorded) {
    return absl::UnavailableError(
        absl::StrCat("certificate of device ", device_id, " changed during the check-in"));
  }
  repos_.last_seen.Record(device_id, now_unix);
  metrics_.check_ins.Add({}).Increment();

  v1::CheckInResponse response;
  response.mutable_check_in_interval()->set_seconds(options_.check_in_interval.count());
  for (const StoredVersion& stored : record->desired) {
    const v1::ModelVersion& version = stored.meta;
    // A manifest's expiry is always within a minute of fresh (SignedManifestCache). The metadata
    // version is the deployment's (see DesiredForDevice): each deployment is a new release, so an
    // operator's rollback to an older version carries a higher one, while a replayed manifest does
    // not.
    v1::ReleaseManifest manifest;
    manifest.set_model_name(version.model_name());
    manifest.set_version(version.version());
    manifest.set_artifact_sha256(version.artifact_sha256());
    manifest.set_artifact_size_bytes(version.size_bytes());
    manifest.set_format(version.format());
    manifest.set_metadata_version(version.metadata_version());
    // An uploaded reference profile is part of the release: its digest is signed.
    auto reference = UploadedReference(version.model_name(), version.version());
    if (!reference.ok()) return reference.status();
    if (**reference) manifest.set_reference_profile_sha256((***reference).profile_sha256());
    auto signed_manifest = manifests_.Sign(std::move(manifest), now);
    if (!signed_manifest.ok()) return signed_manifest.status();
    v1::DesiredModel* entry = response.add_desired();
    *entry->mutable_manifest() = *std::move(signed_manifest);
    *entry->mutable_metadata() = version;
    if (stored.capture.has_value()) *entry->mutable_capture() = *stored.capture;
    if (**reference) *entry->mutable_reference() = ***reference;

    for (const auto& installed : request.inventory().models()) {
      if (installed.model_name() != version.model_name() ||
          installed.state() != v1::MODEL_STATE_SERVING) {
        continue;
      }
      if (installed.version() != version.version() && patches_ != nullptr &&
          installed.artifact_sha256().size() == 32 &&
          repos_.models.ArtifactReferenced(installed.artifact_sha256()).value_or(false)) {
        // Only artifacts the registry knows can be a patch base: a device cannot make the
        // server queue work for arbitrary digests.
        // A device that reports a stale sha simply gets a patch that fails to apply and falls
        // back to the full artifact; the offer itself is only a hint.
        auto offer =
            patches_->Offer(installed.artifact_sha256(), version.artifact_sha256(),
                            version.size_bytes(), request.inventory().patch_decoder_version());
        if (offer.ok() && *offer) *entry->mutable_patch() = **offer;
      }
    }
  }
  if (auto s = StampAnswer(device_id, now, &response); !s.ok()) return s;
  return response;
}

absl::StatusOr<std::shared_ptr<const std::optional<v1::ReferenceProfile>>>
DeviceApi::UploadedReference(const std::string& model, const std::string& version) {
  using Cached = std::shared_ptr<const std::optional<v1::ReferenceProfile>>;
  static const Cached kNone = std::make_shared<const std::optional<v1::ReferenceProfile>>();
  if (repos_.references == nullptr) return kNone;
  auto key = std::make_pair(model, version);
  if (auto cached = uploaded_references_.Find(key)) return *cached;
  auto stored = repos_.db.Transact(
      "read reference profile", [&](Tx& tx) -> absl::StatusOr<std::optional<v1::ReferenceProfile>> {
        return repos_.references->Get(tx, model, version);
      });
  if (!stored.ok()) return stored.status();
  // A fleet profile is the server's alone: devices bin such a version by the default profile.
  if (*stored && (*stored)->source() != v1::REFERENCE_SOURCE_UPLOADED) stored->reset();
  auto cached = std::make_shared<const std::optional<v1::ReferenceProfile>>(*std::move(stored));
  uploaded_references_.Put(std::move(key), cached);
  return cached;
}

absl::Status DeviceApi::StampAnswer(const std::string& device_id, Clock::TimePoint now,
                                    v1::CheckInResponse* response) const {
  if (options_.delegation.canonical_delegation().empty()) {
    Logger("device")->error("check-in answer without a release key delegation device={}",
                            device_id);
  } else {
    *response->mutable_delegation() = options_.delegation;
  }
  v1::CheckInTimestamp timestamp;
  timestamp.set_delegation_version(delegation_version_);
  timestamp.set_device_id(device_id);
  timestamp.mutable_issued_at()->set_seconds(ToUnixSeconds(now));
  timestamp.mutable_expires_at()->set_seconds(ToUnixSeconds(now + options_.manifest_ttl));
  timestamp.set_desired_sha256(manifest::DesiredDigest(response->desired()));
  auto signed_timestamp = manifest::SignTimestamp(timestamp, release_signer_);
  if (!signed_timestamp.ok()) return signed_timestamp.status();
  *response->mutable_timestamp() = *std::move(signed_timestamp);
  return absl::OkStatus();
}

absl::Status DeviceApi::ReportEvent(const std::string& device_id,
                                    const v1::ReportEventRequest& request) {
  if (auto s = CheckRequestLimits(request); !s.ok()) return s;
  const int64_t now = ToUnixSeconds(clock_.Now());
  for (const v1::UpdateEvent& event : request.events()) {
    if (event.model_name().empty() || event.version().empty() ||
        event.kind() == v1::UPDATE_EVENT_KIND_UNSPECIFIED) {
      return absl::InvalidArgumentError("each event needs model_name, version and kind");
    }
  }
  // One report is one transaction: its events and the target states they move.
  absl::Status stored = repos_.db.Transact("store update events", [&](Tx& tx) -> absl::Status {
    const std::vector<const v1::UpdateEvent*> events(request.events().pointer_begin(),
                                                     request.events().pointer_end());
    if (auto s = repos_.events.InsertAll(tx, device_id, events, now); !s.ok()) return s;
    // In the report's order: a later event of a version moves its target after an earlier one.
    for (const v1::UpdateEvent& event : request.events()) {
      if (event.kind() == v1::UPDATE_EVENT_KIND_PATCH_REJECTED) continue;  // not a state change
      // Operators read the target's detail first: lead with the failure reason's name.
      std::string detail = event.detail();
      if (event.kind() == v1::UPDATE_EVENT_KIND_FAILED) {
        detail = absl::StrCat(v1::FailureReason_Name(event.reason()), ": ", detail);
      }
      if (auto s = repos_.deployments.UpdateTargetState(
              tx, device_id, event.model_name(), event.version(), TargetStateFor(event.kind()),
              event.reason(), detail, now);
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  });
  if (!stored.ok()) return stored;
  for (const v1::UpdateEvent& event : request.events()) {
    metrics_.update_events
        .Add({{"kind", v1::UpdateEventKind_Name(event.kind())},
              {"reason", v1::FailureReason_Name(event.reason())}})
        .Increment();
    if (event.kind() == v1::UPDATE_EVENT_KIND_FAILED) {
      Logger("device")->warn("update failed device={} model={} version={} reason={} detail={}",
                             device_id, EscapeForLog(event.model_name()),
                             EscapeForLog(event.version()), v1::FailureReason_Name(event.reason()),
                             EscapeForLog(event.detail()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::UploadTelemetryResponse> DeviceApi::UploadTelemetry(
    const std::string& device_id, const v1::UploadTelemetryRequest& request) {
  if (auto s = CheckRequestLimits(request); !s.ok()) return s;
  const int64_t now = ToUnixSeconds(clock_.Now());
  for (const auto& entry : request.models()) {
    if (entry.model_name().empty() || entry.version().empty()) {
      return absl::InvalidArgumentError("each telemetry entry needs model_name and version");
    }
    if (entry.error_count() > entry.inference_count()) {
      return absl::InvalidArgumentError("error_count cannot exceed inference_count");
    }
  }
  if (!request.models().empty()) {
    absl::Status stored = repos_.db.Transact("store telemetry", [&](Tx& tx) -> absl::Status {
      for (const auto& entry : request.models()) {
        if (auto s = repos_.telemetry.Insert(tx, device_id, entry, now); !s.ok()) return s;
      }
      return absl::OkStatus();
    });
    if (!stored.ok()) return stored;
  }
  return telemetry_ingest_.Ingest(device_id, request);
}

absl::StatusOr<v1::UploadCaptureResponse> DeviceApi::UploadCapture(
    const std::string& device_id, const v1::UploadCaptureRequest& request) {
  if (captures_ == nullptr) return absl::UnavailableError("capture is not configured");
  if (auto s = CheckRequestLimits(request); !s.ok()) return s;
  return captures_->Ingest(device_id, request);
}

absl::StatusOr<DeviceApi::ArtifactStream> DeviceApi::OpenArtifact(const std::string& device_id,
                                                                  const std::string& sha256) {
  if (sha256.size() != 32) return absl::InvalidArgumentError("artifact_sha256 must be 32 bytes");
  // The same answer as for an unknown digest, so a device cannot probe what exists.
  auto allowed = repos_.devices.MayFetchArtifact(device_id, sha256);
  if (!allowed.ok()) return allowed.status();
  if (!*allowed) return absl::NotFoundError("no such artifact");
  ArtifactStream stream{nullptr, "full", 0};
  auto referenced = repos_.models.ArtifactReferenced(sha256);
  if (!referenced.ok()) return referenced.status();
  if (!*referenced && patch_repo_ != nullptr) {
    auto patch = patch_repo_->FindByPatch(sha256);
    if (!patch.ok()) return patch.status();
    if (*patch) {
      stream.kind = "patch";
      auto full = artifacts_.Open((*patch)->to_sha256);
      if (full.ok() && (*full)->size_bytes() > (*patch)->size_bytes) {
        stream.saved_bytes = (*full)->size_bytes() - (*patch)->size_bytes;
      }
      referenced = true;
    }
  }
  if (!*referenced) return absl::NotFoundError("no such artifact");
  auto reader = artifacts_.Open(sha256);
  if (!reader.ok()) return reader.status();
  stream.reader = *std::move(reader);
  return stream;
}

}  // namespace edgefleet::server
