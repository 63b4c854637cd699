// The operator API's behaviour, shared by the gRPC service and the REST gateway so both
// validate, audit and answer identically. Callers authenticate first and pass the principal.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "common/core/names.h"
#include "common/crypto/signer.h"
#include "edgefleet/v1/admin.pb.h"
#include "server/api/auth.h"
#include "server/artifacts/artifact_store.h"
#include "server/capture/capture_service.h"
#include "server/metrics/server_metrics.h"
#include "server/patches/patch_service.h"
#include "server/rollout/rollout_service.h"
#include "server/store/api_token_repo.h"
#include "server/store/audit_repo.h"
#include "server/store/deployment_repo.h"
#include "server/store/device_repo.h"
#include "server/store/enrollment_token_repo.h"
#include "server/store/model_repo.h"
#include "server/store/reference_repo.h"
#include "server/telemetry/drift_service.h"
#include "server/telemetry/stats.h"

namespace edgefleet::server {

struct AdminApiOptions {
  uint64_t max_artifact_bytes = 2ull << 30;
  // K of the fleet reference (ServerConfig.fleet_reference_windows), for "pending, n of K".
  uint64_t fleet_reference_windows = 100;
};

// The components behind some admin calls; any may be absent (null).
struct AdminServices {
  PatchService* patches = nullptr;
  rollout::RolloutService* rollouts = nullptr;
  telemetry::TelemetryQueries* telemetry = nullptr;
  telemetry::DriftService* drift = nullptr;
  capture::CaptureService* captures = nullptr;
};

// Every mutating call and its audit row commit together in one transaction of `db`.
struct AdminRepos {
  Transactor& db;
  EnrollmentTokenStore& tokens;
  DeviceStore& devices;
  ModelStore& models;
  DeploymentStore& deployments;
  AuditStore& audit;
  ApiTokenStore& api_tokens;
  // Reference profiles; null on a server that keeps none (pushes with a reference are refused).
  ReferenceStore* references = nullptr;
};

// Yields the next chunk of an upload, std::nullopt once the client has sent all of it (never
// for a transfer that merely stopped: that is an error), or an error.
using ChunkSource = std::function<absl::StatusOr<std::optional<std::string>>()>;

// A model upload in progress: validated metadata and an artifact being written (streamed to
// the artifact store, hashed and size-capped as it arrives; discarded unless finished).
class ModelUpload {
 public:
  // Refuses bytes past the declared size (expected_size_bytes) or the store's limit at once.
  absl::Status Append(std::string_view data);
  // What the client says it sent, from the end-of-upload marker (gRPC PushModelFinish): FinishPush
  // refuses the upload unless the bytes received match. `sha256` may be empty (not stated).
  absl::Status DeclareEnd(uint64_t size_bytes, std::string_view sha256);

 private:
  friend class AdminApi;
  ModelUpload(Principal who, v1::PushModelMetadata metadata, std::unique_ptr<ArtifactWriter> writer)
      : who_(std::move(who)), metadata_(std::move(metadata)), writer_(std::move(writer)) {}
  Principal who_;
  v1::PushModelMetadata metadata_;
  std::unique_ptr<ArtifactWriter> writer_;
  uint64_t received_bytes_ = 0;
};

class AdminApi {
 public:
  // `patches` may be null: then no patches are precomputed. `rollouts` may be null: then the
  // Each service may be null: its calls then answer Unavailable (no patches are precomputed
  // without a patch service).
  AdminApi(AdminRepos repos, ArtifactStore& artifacts, const Clock& clock, ServerMetrics& metrics,
           AdminApiOptions options, AdminServices services = {});

  absl::StatusOr<v1::EnrollmentToken> CreateEnrollmentToken(
      const Principal& who, const v1::CreateEnrollmentTokenRequest& request);
  absl::StatusOr<v1::ListDevicesResponse> ListDevices(const v1::ListDevicesRequest& request);
  absl::StatusOr<v1::Device> GetDevice(const v1::GetDeviceRequest& request);
  absl::StatusOr<v1::Device> LabelDevice(const Principal& who,
                                         const v1::LabelDeviceRequest& request);
  absl::StatusOr<v1::Device> DecommissionDevice(const Principal& who,
                                                const v1::DecommissionDeviceRequest& request);
  // Allows one enrollment of an active device id with a new key, within ttl_seconds; the old
  // certificate works until that enrollment replaces it.
  absl::StatusOr<v1::RekeyDeviceResponse> RekeyDevice(const Principal& who,
                                                      const v1::RekeyDeviceRequest& request);
  // Publishing a version: BeginPush validates and opens the upload (a declared size over the
  // limit is ResourceExhausted before any byte is read), the caller appends the artifact's bytes
  // as they arrive and calls FinishPush only once the client has sent all of them (a complete
  // REST body, a gRPC finish marker); FinishPush checks size, digest and that the bytes are an
  // ONNX model whose graph matches the declared inputs and outputs, then records the version.
  // Until FinishPush succeeds nothing is registered; dropping the upload removes its bytes.
  absl::StatusOr<std::unique_ptr<ModelUpload>> BeginPush(const Principal& who,
                                                         const v1::PushModelMetadata& metadata);
  absl::StatusOr<v1::ModelVersion> FinishPush(std::unique_ptr<ModelUpload> upload);
  // BeginPush + Append every chunk + FinishPush.
  absl::StatusOr<v1::ModelVersion> PushModel(const Principal& who,
                                             const v1::PushModelMetadata& metadata,
                                             const ChunkSource& chunks);
  absl::StatusOr<v1::ListModelsResponse> ListModels(const v1::ListModelsRequest& request);
  absl::StatusOr<v1::Model> GetModel(const v1::GetModelRequest& request);
  // NotFound while the version has no reference profile (see ModelVersion.reference).
  absl::StatusOr<v1::ReferenceProfile> GetReferenceProfile(
      const v1::GetReferenceProfileRequest& request);
  absl::StatusOr<v1::Deployment> CreateDeployment(const Principal& who,
                                                  const v1::CreateDeploymentRequest& request);
  absl::StatusOr<v1::Deployment> GetDeployment(const v1::GetDeploymentRequest& request);
  absl::StatusOr<v1::ListDeploymentsResponse> ListDeployments(
      const v1::ListDeploymentsRequest& request);

  // Operator API tokens: the secret is in CreateApiToken's answer only. The built-in `admin`
  // token (server config) and the caller's own token cannot be revoked (FailedPrecondition).
  absl::StatusOr<v1::ApiToken> CreateApiToken(const Principal& who,
                                              const v1::CreateApiTokenRequest& request);
  absl::StatusOr<v1::ListApiTokensResponse> ListApiTokens(const v1::ListApiTokensRequest& request);
  absl::StatusOr<v1::ApiToken> RevokeApiToken(const Principal& who,
                                              const v1::RevokeApiTokenRequest& request);
  absl::StatusOr<v1::ListEnrollmentTokensResponse> ListEnrollmentTokens(
      const v1::ListEnrollmentTokensRequest& request);
  absl::StatusOr<v1::EnrollmentToken> RevokeEnrollmentToken(
      const Principal& who, const v1::RevokeEnrollmentTokenRequest& request);

  // Staged rollouts, answered by the RolloutService. Requests are validated here first
  // (InvalidArgument naming the field, also on a server without a rollout service, which answers
  // Unavailable) so that nothing malformed reaches it; its NotFound, AlreadyExists and
  // FailedPrecondition pass through unchanged.
  absl::StatusOr<v1::Rollout> CreateRollout(const Principal& who,
                                            const v1::CreateRolloutRequest& request);
  absl::StatusOr<v1::Rollout> GetRollout(const v1::GetRolloutRequest& request);
  absl::StatusOr<v1::ListRolloutsResponse> ListRollouts(const v1::ListRolloutsRequest& request);
  absl::StatusOr<v1::Rollout> PauseRollout(const Principal& who,
                                           const v1::PauseRolloutRequest& request);
  absl::StatusOr<v1::Rollout> ResumeRollout(const Principal& who,
                                            const v1::ResumeRolloutRequest& request);
  absl::StatusOr<v1::Rollout> PromoteRollout(const Principal& who,
                                             const v1::PromoteRolloutRequest& request);
  absl::StatusOr<v1::Rollout> AbortRollout(const Principal& who,
                                           const v1::AbortRolloutRequest& request);
  absl::StatusOr<v1::Rollout> RollbackRollout(const Principal& who,
                                              const v1::RollbackRolloutRequest& request);

  // Field telemetry (server/telemetry/stats.h): a model version's series from the roll-ups, and
  // one device's latest windows (NotFound for an unknown device).
  absl::StatusOr<v1::ModelStatsResponse> GetModelStats(const v1::ModelStatsRequest& request);
  absl::StatusOr<v1::DeviceTelemetryResponse> GetDeviceTelemetry(
      const v1::DeviceTelemetryRequest& request);
  // Drift per model version, answered by the DriftService (Unavailable on a server without
  // one); setting thresholds is audited.
  absl::StatusOr<v1::ModelDrift> GetModelDrift(const v1::GetModelDriftRequest& request);
  absl::StatusOr<v1::DriftThresholds> SetDriftThresholds(
      const Principal& who, const v1::SetDriftThresholdsRequest& request);
  // Captured field data: the index (model required; version, since and paging optional) and
  // one capture's payload.
  absl::StatusOr<v1::ListCapturesResponse> ListCaptures(const v1::ListCapturesRequest& request);
  absl::StatusOr<v1::GetCaptureResponse> GetCapture(const v1::GetCaptureRequest& request);

 private:
  // The rollout service, or Unavailable when this server has none.
  absl::StatusOr<rollout::RolloutService*> Rollouts() const;
  absl::StatusOr<v1::Rollout> ActOnRollout(const Principal& who, const std::string& name,
                                           rollout::OperatorAction action,
                                           const std::string& reason);

  // Fills each version's ModelVersion.reference (stored summary, or pending with its count).
  absl::Status AddReferenceSummaries(v1::Model& model);

  // The call's audit row, in the call's transaction.
  absl::Status Audit(Tx& tx, const Principal& who, const std::string& action,
                     const google::protobuf::Message& detail);
  // Queues patches to `to_sha256` from every artifact of `model_name` that `devices` serve now.
  void PrecomputePatches(const std::string& model_name, const std::string& to_sha256,
                         const std::vector<v1::Device>& devices);

  AdminRepos repos_;
  ArtifactStore& artifacts_;
  const Clock& clock_;
  ServerMetrics& metrics_;
  AdminApiOptions options_;
  AdminServices services_;
};

// The naming rule the agent checks too (common/core/names.h).
using ::edgefleet::ValidateModelName;
using ::edgefleet::ValidateVersion;

}  // namespace edgefleet::server
