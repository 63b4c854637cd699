#include "server/api/admin_grpc_service.h"

#include "server/api/rpc_scope.h"

namespace edgefleet::server {
namespace {

std::string AuthorizationHeader(const grpc::ServerContext& context) {
  auto it = context.client_metadata().find("authorization");
  if (it == context.client_metadata().end()) return "";
  return std::string(it->second.data(), it->second.size());
}

}  // namespace

template <typename Response, typename Call>
grpc::Status AdminGrpcService::Handle(grpc::ServerContext* context, const char* method,
                                      bool mutating, Response* response, Call call) {
  RpcScope scope(metrics_, "AdminService", method);
  auto principal = auth_.Authenticate(AuthorizationHeader(*context));
  if (!principal.ok()) return scope.Finish(principal.status());
  if (auto s = Authenticator::Authorize(*principal, mutating); !s.ok()) return scope.Finish(s);
  auto result = call(*principal);
  if (!result.ok()) return scope.Finish(result.status());
  *response = *std::move(result);
  return scope.Finish(absl::OkStatus());
}

grpc::Status AdminGrpcService::CreateEnrollmentToken(
    grpc::ServerContext* context, const v1::CreateEnrollmentTokenRequest* request,
    v1::EnrollmentToken* response) {
  return Handle(context, "CreateEnrollmentToken", true, response,
                [&](const Principal& who) { return api_.CreateEnrollmentToken(who, *request); });
}

grpc::Status AdminGrpcService::ListDevices(grpc::ServerContext* context,
                                           const v1::ListDevicesRequest* request,
                                           v1::ListDevicesResponse* response) {
  return Handle(context, "ListDevices", false, response,
                [&](const Principal&) { return api_.ListDevices(*request); });
}

grpc::Status AdminGrpcService::GetDevice(grpc::ServerContext* context,
                                         const v1::GetDeviceRequest* request,
                                         v1::Device* response) {
  return Handle(context, "GetDevice", false, response,
                [&](const Principal&) { return api_.GetDevice(*request); });
}

grpc::Status AdminGrpcService::LabelDevice(grpc::ServerContext* context,
                                           const v1::LabelDeviceRequest* request,
                                           v1::Device* response) {
  return Handle(context, "LabelDevice", true, response,
                [&](const Principal& who) { return api_.LabelDevice(who, *request); });
}

grpc::Status AdminGrpcService::DecommissionDevice(grpc::ServerContext* context,
                                                  const v1::DecommissionDeviceRequest* request,
                                                  v1::Device* response) {
  return Handle(context, "DecommissionDevice", true, response,
                [&](const Principal& who) { return api_.DecommissionDevice(who, *request); });
}

grpc::Status AdminGrpcService::RekeyDevice(grpc::ServerContext* context,
                                           const v1::RekeyDeviceRequest* request,
                                           v1::RekeyDeviceResponse* response) {
  return Handle(context, "RekeyDevice", true, response,
                [&](const Principal& who) { return api_.RekeyDevice(who, *request); });
}

grpc::Status AdminGrpcService::PushModel(grpc::ServerContext* context,
                                         grpc::ServerReader<v1::PushModelRequest>* reader,
                                         v1::ModelVersion* response) {
  return Handle(
      context, "PushModel", true, response,
      [&](const Principal& who) -> absl::StatusOr<v1::ModelVersion> {
        v1::PushModelRequest first;
        if (!reader->Read(&first) || !first.has_metadata()) {
          return absl::InvalidArgumentError("the first PushModel message must carry metadata");
        }
        auto upload = api_.BeginPush(who, first.metadata());
        if (!upload.ok()) return upload.status();
        // The upload counts only when the client ends it with a finish message and then closes
        // its side: a stream that breaks off or is cancelled also ends Read(), without one.
        v1::PushModelRequest next;
        bool finished = false;
        while (reader->Read(&next)) {
          if (finished) return absl::InvalidArgumentError("nothing may follow the finish message");
          if (next.has_chunk()) {
            if (auto s = (*upload)->Append(next.chunk()); !s.ok()) return s;
          } else if (next.has_finish()) {
            finished = true;
            if (auto s = (*upload)->DeclareEnd(next.finish().size_bytes(), next.finish().sha256());
                !s.ok()) {
              return s;
            }
          } else {
            return absl::InvalidArgumentError("metadata may only be sent once");
          }
        }
        if (context->IsCancelled()) {
          return absl::CancelledError("the upload was cancelled; nothing was registered");
        }
        if (!finished) {
          return absl::InvalidArgumentError(
              "the upload ended without its finish message; nothing was registered");
        }
        return api_.FinishPush(*std::move(upload));
      });
}

grpc::Status AdminGrpcService::ListModels(grpc::ServerContext* context,
                                          const v1::ListModelsRequest* request,
                                          v1::ListModelsResponse* response) {
  return Handle(context, "ListModels", false, response,
                [&](const Principal&) { return api_.ListModels(*request); });
}

grpc::Status AdminGrpcService::GetModel(grpc::ServerContext* context,
                                        const v1::GetModelRequest* request, v1::Model* response) {
  return Handle(context, "GetModel", false, response,
                [&](const Principal&) { return api_.GetModel(*request); });
}

grpc::Status AdminGrpcService::CreateDeployment(grpc::ServerContext* context,
                                                const v1::CreateDeploymentRequest* request,
                                                v1::Deployment* response) {
  return Handle(context, "CreateDeployment", true, response,
                [&](const Principal& who) { return api_.CreateDeployment(who, *request); });
}

grpc::Status AdminGrpcService::GetDeployment(grpc::ServerContext* context,
                                             const v1::GetDeploymentRequest* request,
                                             v1::Deployment* response) {
  return Handle(context, "GetDeployment", false, response,
                [&](const Principal&) { return api_.GetDeployment(*request); });
}

grpc::Status AdminGrpcService::ListDeployments(grpc::ServerContext* context,
                                               const v1::ListDeploymentsRequest* request,
                                               v1::ListDeploymentsResponse* response) {
  return Handle(context, "ListDeployments", false, response,
                [&](const Principal&) { return api_.ListDeployments(*request); });
}

}  // namespace edgefleet::server
