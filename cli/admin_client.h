// Clients edgefleetctl uses to talk to the server's admin API and to an agent's local inference
// API; gRPC stays inside admin_client.cpp and errors come back as absl::Status with gRPC's codes.
#pragma once

#include <chrono>
#include <istream>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "edgefleet/v1/admin.pb.h"
#include "edgefleet/v1/inference.pb.h"

namespace edgefleet::cli {

struct AdminClientOptions {
  std::string server;  // HOST:PORT (or any gRPC target such as unix:PATH)
  std::string token;   // sent as "authorization: Bearer <token>" when non-empty
  std::chrono::seconds timeout{30};
};

class AdminClient {
 public:
  virtual ~AdminClient() = default;

  // A plaintext channel: the admin port listens on loopback. Connects lazily on the first call.
  static std::unique_ptr<AdminClient> Create(const AdminClientOptions& options);

  virtual absl::StatusOr<v1::EnrollmentToken> CreateEnrollmentToken(
      const v1::CreateEnrollmentTokenRequest& request) = 0;
  virtual absl::StatusOr<v1::ListDevicesResponse> ListDevices(
      const v1::ListDevicesRequest& request) = 0;
  virtual absl::StatusOr<v1::Device> GetDevice(const v1::GetDeviceRequest& request) = 0;
  virtual absl::StatusOr<v1::Device> LabelDevice(const v1::LabelDeviceRequest& request) = 0;
  virtual absl::StatusOr<v1::Device> DecommissionDevice(
      const v1::DecommissionDeviceRequest& request) = 0;
  virtual absl::StatusOr<v1::RekeyDeviceResponse> RekeyDevice(
      const v1::RekeyDeviceRequest& request) = 0;
  // Streams `metadata`, then `artifact` in 64 KiB chunks, then a finish message with the size
  // and SHA-256 of what was sent. Stops early if the server gives up.
  virtual absl::StatusOr<v1::ModelVersion> PushModel(const v1::PushModelMetadata& metadata,
                                                     std::istream& artifact) = 0;
  virtual absl::StatusOr<v1::ListModelsResponse> ListModels(
      const v1::ListModelsRequest& request) = 0;
  virtual absl::StatusOr<v1::Model> GetModel(const v1::GetModelRequest& request) = 0;
  virtual absl::StatusOr<v1::Deployment> CreateDeployment(
      const v1::CreateDeploymentRequest& request) = 0;
  virtual absl::StatusOr<v1::Deployment> GetDeployment(const v1::GetDeploymentRequest& request) = 0;
  virtual absl::StatusOr<v1::ListDeploymentsResponse> ListDeployments(
      const v1::ListDeploymentsRequest& request) = 0;
  virtual absl::StatusOr<v1::ApiToken> CreateApiToken(const v1::CreateApiTokenRequest& request) = 0;
  virtual absl::StatusOr<v1::ListApiTokensResponse> ListApiTokens(
      const v1::ListApiTokensRequest& request) = 0;
  virtual absl::StatusOr<v1::ApiToken> RevokeApiToken(const v1::RevokeApiTokenRequest& request) = 0;
  virtual absl::StatusOr<v1::ListEnrollmentTokensResponse> ListEnrollmentTokens(
      const v1::ListEnrollmentTokensRequest& request) = 0;
  virtual absl::StatusOr<v1::EnrollmentToken> RevokeEnrollmentToken(
      const v1::RevokeEnrollmentTokenRequest& request) = 0;
  virtual absl::StatusOr<v1::Rollout> CreateRollout(const v1::CreateRolloutRequest& request) = 0;
  virtual absl::StatusOr<v1::Rollout> GetRollout(const v1::GetRolloutRequest& request) = 0;
  virtual absl::StatusOr<v1::ListRolloutsResponse> ListRollouts(
      const v1::ListRolloutsRequest& request) = 0;
  virtual absl::StatusOr<v1::Rollout> PauseRollout(const v1::PauseRolloutRequest& request) = 0;
  virtual absl::StatusOr<v1::Rollout> ResumeRollout(const v1::ResumeRolloutRequest& request) = 0;
  virtual absl::StatusOr<v1::Rollout> PromoteRollout(const v1::PromoteRolloutRequest& request) = 0;
  virtual absl::StatusOr<v1::Rollout> AbortRollout(const v1::AbortRolloutRequest& request) = 0;
  virtual absl::StatusOr<v1::Rollout> RollbackRollout(
      const v1::RollbackRolloutRequest& request) = 0;
  // Field telemetry; fakes that do not serve it answer Unimplemented.
  virtual absl::StatusOr<v1::ModelStatsResponse> GetModelStats(const v1::ModelStatsRequest&) {
    return absl::UnimplementedError("model stats are not available from this client");
  }
  virtual absl::StatusOr<v1::DeviceTelemetryResponse> GetDeviceTelemetry(
      const v1::DeviceTelemetryRequest&) {
    return absl::UnimplementedError("device telemetry is not available from this client");
  }
  virtual absl::StatusOr<v1::ModelDrift> GetModelDrift(const v1::GetModelDriftRequest& request) = 0;
  virtual absl::StatusOr<v1::DriftThresholds> SetDriftThresholds(
      const v1::SetDriftThresholdsRequest& request) = 0;
  // Captured field data; fakes that do not serve it answer Unimplemented.
  virtual absl::StatusOr<v1::ListCapturesResponse> ListCaptures(const v1::ListCapturesRequest&) {
    return absl::UnimplementedError("ListCaptures");
  }
  virtual absl::StatusOr<v1::GetCaptureResponse> GetCapture(const v1::GetCaptureRequest&) {
    return absl::UnimplementedError("GetCapture");
  }
};

// The agent's InferenceService on its Unix socket.
class InferenceClient {
 public:
  virtual ~InferenceClient() = default;
  static std::unique_ptr<InferenceClient> Create(const std::string& socket_path,
                                                 std::chrono::seconds timeout);

  virtual absl::StatusOr<v1::PredictResponse> Predict(const v1::PredictRequest& request) = 0;
  virtual absl::StatusOr<v1::ListLocalModelsResponse> ListModels(
      const v1::ListLocalModelsRequest& request) = 0;
  virtual absl::StatusOr<v1::AgentStatus> GetAgentStatus(const v1::GetAgentStatusRequest&) {
    return absl::UnimplementedError("agent status is not available from this client");
  }
};

// The size of each artifact chunk in PushModel.
inline constexpr size_t kPushChunkBytes = 64 * 1024;

}  // namespace edgefleet::cli
