// gRPC adapter for AdminClient and InferenceClient.
#include "cli/admin_client.h"

#include <grpcpp/grpcpp.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto/sha256.h"
#include "edgefleet/v1/admin.grpc.pb.h"
#include "edgefleet/v1/inference.grpc.pb.h"

namespace edgefleet::cli {
namespace {

// gRPC and absl share status code numbers, so the mapping is 1:1.
absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

class GrpcAdminClient final : public AdminClient {
 public:
  explicit GrpcAdminClient(const AdminClientOptions& options)
      : options_(options),
        stub_(v1::AdminService::NewStub(
            grpc::CreateChannel(options.server, grpc::InsecureChannelCredentials()))) {}

  absl::StatusOr<v1::EnrollmentToken> CreateEnrollmentToken(
      const v1::CreateEnrollmentTokenRequest& request) override {
    return Call(&v1::AdminService::Stub::CreateEnrollmentToken, request);
  }
  absl::StatusOr<v1::ListDevicesResponse> ListDevices(
      const v1::ListDevicesRequest& request) override {
    return Call(&v1::AdminService::Stub::ListDevices, request);
  }
  absl::StatusOr<v1::Device> GetDevice(const v1::GetDeviceRequest& request) override {
    return Call(&v1::AdminService::Stub::GetDevice, request);
  }
  absl::StatusOr<v1::Device> LabelDevice(const v1::LabelDeviceRequest& request) override {
    return Call(&v1::AdminService::Stub::LabelDevice, request);
  }
  absl::StatusOr<v1::Device> DecommissionDevice(
      const v1::DecommissionDeviceRequest& request) override {
    return Call(&v1::AdminService::Stub::DecommissionDevice, request);
  }
  absl::StatusOr<v1::RekeyDeviceResponse> RekeyDevice(
      const v1::RekeyDeviceRequest& request) override {
    return Call(&v1::AdminService::Stub::RekeyDevice, request);
  }
  absl::StatusOr<v1::ListModelsResponse> ListModels(const v1::ListModelsRequest& request) override {
    return Call(&v1::AdminService::Stub::ListModels, request);
  }
  absl::StatusOr<v1::Model> GetModel(const v1::GetModelRequest& request) override {
    return Call(&v1::AdminService::Stub::GetModel, request);
  }
  absl::StatusOr<v1::Deployment> CreateDeployment(
      const v1::CreateDeploymentRequest& request) override {
    return Call(&v1::AdminService::Stub::CreateDeployment, request);
  }
  absl::StatusOr<v1::Deployment> GetDeployment(const v1::GetDeploymentRequest& request) override {
    return Call(&v1::AdminService::Stub::GetDeployment, request);
  }
  absl::StatusOr<v1::ListDeploymentsResponse> ListDeployments(
      const v1::ListDeploymentsRequest& request) override {
    return Call(&v1::AdminService::Stub::ListDeployments, request);
  }
  absl::StatusOr<v1::ApiToken> CreateApiToken(const v1::CreateApiTokenRequest& request) override {
    return Call(&v1::AdminService::Stub::CreateApiToken, request);
  }
  absl::StatusOr<v1::ListApiTokensResponse> ListApiTokens(
      const v1::ListApiTokensRequest& request) override {
    return Call(&v1::AdminService::Stub::ListApiTokens, request);
  }
  absl::StatusOr<v1::ApiToken> RevokeApiToken(const v1::RevokeApiTokenRequest& request) override {
    return Call(&v1::AdminService::Stub::RevokeApiToken, request);
  }
  absl::StatusOr<v1::ModelStatsResponse> GetModelStats(
      const v1::ModelStatsRequest& request) override {
    return Call(&v1::AdminService::Stub::GetModelStats, request);
  }
  absl::StatusOr<v1::DeviceTelemetryResponse> GetDeviceTelemetry(
      const v1::DeviceTelemetryRequest& request) override {
    return Call(&v1::AdminService::Stub::GetDeviceTelemetry, request);
  }
  absl::StatusOr<v1::ListEnrollmentTokensResponse> ListEnrollmentTokens(
      const v1::ListEnrollmentTokensRequest& request) override {
    return Call(&v1::AdminService::Stub::ListEnrollmentTokens, request);
  }
  absl::StatusOr<v1::EnrollmentToken> RevokeEnrollmentToken(
      const v1::RevokeEnrollmentTokenRequest& request) override {
    return Call(&v1::AdminService::Stub::RevokeEnrollmentToken, request);
  }
  absl::StatusOr<v1::Rollout> CreateRollout(const v1::CreateRolloutRequest& request) override {
    return Call(&v1::AdminService::Stub::CreateRollout, request);
  }
  absl::StatusOr<v1::Rollout> GetRollout(const v1::GetRolloutRequest& request) override {
    return Call(&v1::AdminService::Stub::GetRollout, request);
  }
  absl::StatusOr<v1::ListRolloutsResponse> ListRollouts(
      const v1::ListRolloutsRequest& request) override {
    return Call(&v1::AdminService::Stub::ListRollouts, request);
  }
  absl::StatusOr<v1::Rollout> PauseRollout(const v1::PauseRolloutRequest& request) override {
    return Call(&v1::AdminService::Stub::PauseRollout, request);
  }
  absl::StatusOr<v1::Rollout> ResumeRollout(const v1::ResumeRolloutRequest& request) override {
    return Call(&v1::AdminService::Stub::ResumeRollout, request);
  }
  absl::StatusOr<v1::Rollout> PromoteRollout(const v1::PromoteRolloutRequest& request) override {
    return Call(&v1::AdminService::Stub::PromoteRollout, request);
  }
  absl::StatusOr<v1::Rollout> AbortRollout(const v1::AbortRolloutRequest& request) override {
    return Call(&v1::AdminService::Stub::AbortRollout, request);
  }
  absl::StatusOr<v1::Rollout> RollbackRollout(const v1::RollbackRolloutRequest& request) override {
    return Call(&v1::AdminService::Stub::RollbackRollout, request);
  }
  absl::StatusOr<v1::ModelDrift> GetModelDrift(const v1::GetModelDriftRequest& request) override {
    return Call(&v1::AdminService::Stub::GetModelDrift, request);
  }
  absl::StatusOr<v1::DriftThresholds> SetDriftThresholds(
      const v1::SetDriftThresholdsRequest& request) override {
    return Call(&v1::AdminService::Stub::SetDriftThresholds, request);
  }
  absl::StatusOr<v1::ListCapturesResponse> ListCaptures(
      const v1::ListCapturesRequest& request) override {
    return Call(&v1::AdminService::Stub::ListCaptures, request);
  }
  absl::StatusOr<v1::GetCaptureResponse> GetCapture(const v1::GetCaptureRequest& request) override {
    return Call(&v1::AdminService::Stub::GetCapture, request);
  }

  absl::StatusOr<v1::ModelVersion> PushModel(const v1::PushModelMetadata& metadata,
                                             std::istream& artifact) override {
    grpc::ClientContext context;
    Prepare(context);
    v1::ModelVersion response;
    std::unique_ptr<grpc::ClientWriter<v1::PushModelRequest>> writer =
        stub_->PushModel(&context, &response);
    v1::PushModelRequest first;
    *first.mutable_metadata() = metadata;
    // A failed Write means the server has ended the call; Finish() says why.
    bool open = writer->Write(first);
    std::vector<char> buffer(kPushChunkBytes);
    absl::Status read_error;
    // What was actually sent, for the finish message: the server registers nothing without it.
    crypto::Sha256 sent_hash;
    uint64_t sent_bytes = 0;
    while (open) {
      artifact.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      std::streamsize n = artifact.gcount();
      if (n > 0) {
        v1::PushModelRequest chunk;
        chunk.set_chunk(buffer.data(), static_cast<size_t>(n));
        sent_hash.Update(chunk.chunk());
        sent_bytes += static_cast<uint64_t>(n);
        open = writer->Write(chunk);
      }
      if (artifact.bad()) {
        read_error = absl::DataLossError("reading the model file failed");
        context.TryCancel();
        break;
      }
      if (artifact.eof()) break;
    }
    if (open) {
      v1::PushModelRequest finish;
      finish.mutable_finish()->set_size_bytes(sent_bytes);
      finish.mutable_finish()->set_sha256(sent_hash.Finish());
      open = writer->Write(finish);
    }
    if (open) writer->WritesDone();
    grpc::Status status = writer->Finish();
    if (!read_error.ok()) return read_error;
    if (!status.ok()) return FromGrpc(status);
    return response;
  }

 private:
  void Prepare(grpc::ClientContext& context) const {
    context.set_deadline(std::chrono::system_clock::now() + options_.timeout);
    if (!options_.token.empty()) {
      context.AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
    }
  }

  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(grpc::Status (v1::AdminService::Stub::*method)(grpc::ClientContext*,
                                                                               const Request&,
                                                                               Response*),
                                const Request& request) {
    grpc::ClientContext context;
    Prepare(context);
    Response response;
    grpc::Status status = (stub_.get()->*method)(&context, request, &response);
    if (!status.ok()) return FromGrpc(status);
    return response;
  }

  AdminClientOptions options_;
  std::unique_ptr<v1::AdminService::Stub> stub_;
};

class GrpcInferenceClient final : public InferenceClient {
 public:
  GrpcInferenceClient(const std::string& socket_path, std::chrono::seconds timeout)
      : timeout_(timeout),
        stub_(v1::InferenceService::NewStub(grpc::CreateChannel(
            absl::StrCat("unix:", socket_path), grpc::InsecureChannelCredentials()))) {}

  absl::StatusOr<v1::PredictResponse> Predict(const v1::PredictRequest& request) override {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout_);
    v1::PredictResponse response;
    grpc::Status status = stub_->Predict(&context, request, &response);
    if (!status.ok()) return FromGrpc(status);
    return response;
  }

  absl::StatusOr<v1::ListLocalModelsResponse> ListModels(
      const v1::ListLocalModelsRequest& request) override {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout_);
    v1::ListLocalModelsResponse response;
    grpc::Status status = stub_->ListModels(&context, request, &response);
    if (!status.ok()) return FromGrpc(status);
    return response;
  }

  absl::StatusOr<v1::AgentStatus> GetAgentStatus(
      const v1::GetAgentStatusRequest& request) override {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout_);
    v1::AgentStatus response;
    grpc::Status status = stub_->GetAgentStatus(&context, request, &response);
    if (!status.ok()) return FromGrpc(status);
    return response;
  }

 private:
  std::chrono::seconds timeout_;
  std::unique_ptr<v1::InferenceService::Stub> stub_;
};

}  // namespace

std::unique_ptr<AdminClient> AdminClient::Create(const AdminClientOptions& options) {
  return std::make_unique<GrpcAdminClient>(options);
}

std::unique_ptr<InferenceClient> InferenceClient::Create(const std::string& socket_path,
                                                         std::chrono::seconds timeout) {
  return std::make_unique<GrpcInferenceClient>(socket_path, timeout);
}

}  // namespace edgefleet::cli
