#include "server/api/admin_calls.h"

#include "absl/strings/str_cat.h"
#include "server/api/request_limits.h"

namespace edgefleet::server {
namespace {

using google::protobuf::Message;
namespace p = permission;

template <typename Request, typename Response>
using WithPrincipal = absl::StatusOr<Response> (AdminApi::*)(const Principal&, const Request&);
template <typename Request, typename Response>
using WithoutPrincipal = absl::StatusOr<Response> (AdminApi::*)(const Request&);

// A unary entry for an AdminApi method; the request arrives already checked to be a `Request`.
template <typename Request, typename Response, typename Method>
AdminCall Unary(std::string_view rpc, Permission permission, Method method, RestRoute rest) {
  AdminHandler handler = [method](
                             AdminApi& api, const Principal& who,
                             const Message& message) -> absl::StatusOr<std::unique_ptr<Message>> {
    const auto& request = static_cast<const Request&>(message);
    absl::StatusOr<Response> response;
    if constexpr (std::is_same_v<Method, WithPrincipal<Request, Response>>) {
      response = (api.*method)(who, request);
    } else {
      static_assert(std::is_same_v<Method, WithoutPrincipal<Request, Response>>);
      response = (api.*method)(request);
    }
    if (!response.ok()) return response.status();
    return std::make_unique<Response>(*std::move(response));
  };
  return AdminCall{rpc,
                   permission,
                   &Request::default_instance(),
                   &Response::default_instance(),
                   std::move(handler),
                   rest};
}

std::vector<AdminCall> BuildTable() {
  using M = HttpMethod;
  using B = RestBody;
  std::vector<AdminCall> calls;
  calls.push_back(Unary<v1::CreateEnrollmentTokenRequest, v1::EnrollmentToken>(
      "CreateEnrollmentToken", p::kCreateEnrollmentTokens, &AdminApi::CreateEnrollmentToken,
      {M::kPost, "/v1/enrollment-tokens", B::kJson}));
  calls.push_back(Unary<v1::ListDevicesRequest, v1::ListDevicesResponse>(
      "ListDevices", p::kReadDevices, &AdminApi::ListDevices, {M::kGet, "/v1/devices", B::kNone}));
  calls.push_back(
      Unary<v1::GetDeviceRequest, v1::Device>("GetDevice", p::kReadDevices, &AdminApi::GetDevice,
                                              {M::kGet, "/v1/devices/{device_id}", B::kNone}));
  calls.push_back(Unary<v1::LabelDeviceRequest, v1::Device>(
      "LabelDevice", p::kWriteDevices, &AdminApi::LabelDevice,
      {M::kPost, "/v1/devices/{device_id}/labels", B::kJson}));
  calls.push_back(Unary<v1::DecommissionDeviceRequest, v1::Device>(
      "DecommissionDevice", p::kWriteDevices, &AdminApi::DecommissionDevice,
      {M::kPost, "/v1/devices/{device_id}/decommission", B::kNone}));
  calls.push_back(Unary<v1::RekeyDeviceRequest, v1::RekeyDeviceResponse>(
      "RekeyDevice", p::kRekeyDevices, &AdminApi::RekeyDevice,
      {M::kPost, "/v1/devices/{device_id}/rekey", B::kJson}));
  // Client streaming: served by AdminGrpcService::PushModel and the REST raw-body upload.
  calls.push_back(
      AdminCall{"PushModel", p::kPushModels, &v1::PushModelRequest::default_instance(),
                &v1::ModelVersion::default_instance(), nullptr,
                RestRoute{M::kPost, "/v1/models/{model_name}/versions/{version}", B::kRawUpload}});
  calls.push_back(Unary<v1::ListModelsRequest, v1::ListModelsResponse>(
      "ListModels", p::kReadModels, &AdminApi::ListModels, {M::kGet, "/v1/models", B::kNone}));
  calls.push_back(
      Unary<v1::GetModelRequest, v1::Model>("GetModel", p::kReadModels, &AdminApi::GetModel,
                                            {M::kGet, "/v1/models/{model_name}", B::kNone}));
  calls.push_back(Unary<v1::CreateDeploymentRequest, v1::Deployment>(
      "CreateDeployment", p::kCreateDeployments, &AdminApi::CreateDeployment,
      {M::kPost, "/v1/deployments", B::kJson}));
  calls.push_back(Unary<v1::GetDeploymentRequest, v1::Deployment>(
      "GetDeployment", p::kReadDeployments, &AdminApi::GetDeployment,
      {M::kGet, "/v1/deployments/{deployment_id}", B::kNone}));
  calls.push_back(Unary<v1::ListDeploymentsRequest, v1::ListDeploymentsResponse>(
      "ListDeployments", p::kReadDeployments, &AdminApi::ListDeployments,
      {M::kGet, "/v1/deployments", B::kNone}));
  calls.push_back(Unary<v1::CreateApiTokenRequest, v1::ApiToken>(
      "CreateApiToken", p::kCreateApiTokens, &AdminApi::CreateApiToken,
      {M::kPost, "/v1/api-tokens", B::kJson}));
  calls.push_back(Unary<v1::ListApiTokensRequest, v1::ListApiTokensResponse>(
      "ListApiTokens", p::kReadApiTokens, &AdminApi::ListApiTokens,
      {M::kGet, "/v1/api-tokens", B::kNone}));
  calls.push_back(Unary<v1::RevokeApiTokenRequest, v1::ApiToken>(
      "RevokeApiToken", p::kRevokeApiTokens, &AdminApi::RevokeApiToken,
      {M::kPost, "/v1/api-tokens/{name}/revoke", B::kNone}));
  calls.push_back(Unary<v1::ListEnrollmentTokensRequest, v1::ListEnrollmentTokensResponse>(
      "ListEnrollmentTokens", p::kReadEnrollmentTokens, &AdminApi::ListEnrollmentTokens,
      {M::kGet, "/v1/enrollment-tokens", B::kNone}));
  calls.push_back(Unary<v1::RevokeEnrollmentTokenRequest, v1::EnrollmentToken>(
      "RevokeEnrollmentToken", p::kRevokeEnrollmentTokens, &AdminApi::RevokeEnrollmentToken,
      {M::kPost, "/v1/enrollment-tokens/{token_id}/revoke", B::kNone}));
  calls.push_back(Unary<v1::CreateRolloutRequest, v1::Rollout>(
      "CreateRollout", p::kCreateRollouts, &AdminApi::CreateRollout,
      {M::kPost, "/v1/rollouts", B::kJson}));
  calls.push_back(Unary<v1::GetRolloutRequest, v1::Rollout>(
      "GetRollout", p::kReadRollouts, &AdminApi::GetRollout,
      {M::kGet, "/v1/rollouts/{name}", B::kNone}));
  calls.push_back(Unary<v1::ListRolloutsRequest, v1::ListRolloutsResponse>(
      "ListRollouts", p::kReadRollouts, &AdminApi::ListRollouts,
      {M::kGet, "/v1/rollouts", B::kNone}));
  // The operator actions take an optional JSON body: {"reason": "..."}.
  calls.push_back(Unary<v1::PauseRolloutRequest, v1::Rollout>(
      "PauseRollout", p::kActRollouts, &AdminApi::PauseRollout,
      {M::kPost, "/v1/rollouts/{name}/pause", B::kJson}));
  calls.push_back(Unary<v1::ResumeRolloutRequest, v1::Rollout>(
      "ResumeRollout", p::kActRollouts, &AdminApi::ResumeRollout,
      {M::kPost, "/v1/rollouts/{name}/resume", B::kJson}));
  calls.push_back(Unary<v1::PromoteRolloutRequest, v1::Rollout>(
      "PromoteRollout", p::kActRollouts, &AdminApi::PromoteRollout,
      {M::kPost, "/v1/rollouts/{name}/promote", B::kJson}));
  calls.push_back(Unary<v1::AbortRolloutRequest, v1::Rollout>(
      "AbortRollout", p::kActRollouts, &AdminApi::AbortRollout,
      {M::kPost, "/v1/rollouts/{name}/abort", B::kJson}));
  calls.push_back(Unary<v1::RollbackRolloutRequest, v1::Rollout>(
      "RollbackRollout", p::kActRollouts, &AdminApi::RollbackRollout,
      {M::kPost, "/v1/rollouts/{name}/rollback", B::kJson}));
  calls.push_back(Unary<v1::ModelStatsRequest, v1::ModelStatsResponse>(
      "GetModelStats", p::kReadModels, &AdminApi::GetModelStats,
      {M::kGet, "/v1/models/{model_name}/versions/{version}/stats", B::kNone}));
  calls.push_back(Unary<v1::DeviceTelemetryRequest, v1::DeviceTelemetryResponse>(
      "GetDeviceTelemetry", p::kReadDevices, &AdminApi::GetDeviceTelemetry,
      {M::kGet, "/v1/devices/{device_id}/telemetry", B::kNone}));
  calls.push_back(Unary<v1::GetReferenceProfileRequest, v1::ReferenceProfile>(
      "GetReferenceProfile", p::kReadModels, &AdminApi::GetReferenceProfile,
      {M::kGet, "/v1/models/{model_name}/versions/{version}/reference", B::kNone}));
  calls.push_back(Unary<v1::GetModelDriftRequest, v1::ModelDrift>(
      "GetModelDrift", p::kReadModels, &AdminApi::GetModelDrift,
      {M::kGet, "/v1/models/{model_name}/versions/{version}/drift", B::kNone}));
  calls.push_back(Unary<v1::SetDriftThresholdsRequest, v1::DriftThresholds>(
      "SetDriftThresholds", p::kConfigureModels, &AdminApi::SetDriftThresholds,
      {M::kPost, "/v1/models/{model_name}/drift-thresholds", B::kJson}));
  calls.push_back(Unary<v1::ListCapturesRequest, v1::ListCapturesResponse>(
      "ListCaptures", p::kReadModels, &AdminApi::ListCaptures,
      {M::kGet, "/v1/captures", B::kNone}));
  calls.push_back(Unary<v1::GetCaptureRequest, v1::GetCaptureResponse>(
      "GetCapture", p::kReadModels, &AdminApi::GetCapture,
      {M::kGet, "/v1/captures/{capture_id}", B::kNone}));
  return calls;
}

}  // namespace

const std::vector<AdminCall>& AdminCalls() {
  static const auto* kCalls = new std::vector<AdminCall>(BuildTable());
  return *kCalls;
}

const AdminCall* FindAdminCall(std::string_view rpc) {
  for (const AdminCall& call : AdminCalls()) {
    if (call.rpc == rpc) return &call;
  }
  return nullptr;
}

absl::StatusOr<Principal> AdminDispatcher::Admit(const AdminCall& call,
                                                 std::string_view authorization) const {
  auto principal = auth_.Authenticate(authorization);
  if (!principal.ok()) return principal.status();
  if (absl::Status s = Authenticator::Authorize(*principal, call.permission); !s.ok()) return s;
  return principal;
}

absl::StatusOr<std::unique_ptr<Message>> AdminDispatcher::Run(const AdminCall& call,
                                                              const Principal& who,
                                                              const Message& request) const {
  if (call.handler == nullptr) {
    return absl::InternalError(absl::StrCat(std::string(call.rpc), " is a streaming call"));
  }
  if (request.GetDescriptor() != call.request_prototype->GetDescriptor()) {
    return absl::InternalError(absl::StrCat(std::string(call.rpc), " takes ",
                                            call.request_prototype->GetDescriptor()->full_name(),
                                            ", not ", request.GetDescriptor()->full_name()));
  }
  // Every unary request is bounded here, for both faces; PushModel's metadata in BeginPush.
  if (absl::Status s = CheckRequestLimits(request); !s.ok()) return s;
  return call.handler(api_, who, request);
}

}  // namespace edgefleet::server
