// gRPC face of the admin API: authenticates the bearer token, then delegates to AdminApi.
#pragma once

#include "edgefleet/v1/admin.grpc.pb.h"
#include "server/api/admin_api.h"
#include "server/api/auth.h"

namespace edgefleet::server {

class AdminGrpcService final : public v1::AdminService::Service {
 public:
  AdminGrpcService(AdminApi& api, const Authenticator& auth, ServerMetrics& metrics)
      : api_(api), auth_(auth), metrics_(metrics) {}

  grpc::Status CreateEnrollmentToken(grpc::ServerContext*, const v1::CreateEnrollmentTokenRequest*,
                                     v1::EnrollmentToken*) override;
  grpc::Status ListDevices(grpc::ServerContext*, const v1::ListDevicesRequest*,
                           v1::ListDevicesResponse*) override;
  grpc::Status GetDevice(grpc::ServerContext*, const v1::GetDeviceRequest*, v1::Device*) override;
  grpc::Status LabelDevice(grpc::ServerContext*, const v1::LabelDeviceRequest*,
                           v1::Device*) override;
  grpc::Status RekeyDevice(grpc::ServerContext*, const v1::RekeyDeviceRequest*,
                           v1::RekeyDeviceResponse*) override;
  grpc::Status DecommissionDevice(grpc::ServerContext*, const v1::DecommissionDeviceRequest*,
                                  v1::Device*) override;
  grpc::Status PushModel(grpc::ServerContext*, grpc::ServerReader<v1::PushModelRequest>*,
                         v1::ModelVersion*) override;
  grpc::Status ListModels(grpc::ServerContext*, const v1::ListModelsRequest*,
                          v1::ListModelsResponse*) override;
  grpc::Status GetModel(grpc::ServerContext*, const v1::GetModelRequest*, v1::Model*) override;
  grpc::Status CreateDeployment(grpc::ServerContext*, const v1::CreateDeploymentRequest*,
                                v1::Deployment*) override;
  grpc::Status GetDeployment(grpc::ServerContext*, const v1::GetDeploymentRequest*,
                             v1::Deployment*) override;
  grpc::Status ListDeployments(grpc::ServerContext*, const v1::ListDeploymentsRequest*,
                               v1::ListDeploymentsResponse*) override;

 private:
  // Authenticates, authorizes, runs `call` and records metrics.
  template <typename Response, typename Call>
  grpc::Status Handle(grpc::ServerContext* context, const char* method, bool mutating,
                      Response* response, Call call);

  AdminApi& api_;
  const Authenticator& auth_;
  ServerMetrics& metrics_;
};

}  // namespace edgefleet::server
