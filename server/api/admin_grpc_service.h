// gRPC face of the admin API: one method per entry of the admin call table (admin_calls.h),
// registered under edgefleet.v1.AdminService; each authenticates the bearer token, checks the
// entry's permission and runs its AdminApi handler. PushModel (client streaming) is its own.
#pragma once

#include <deque>
#include <string>

#include "edgefleet/v1/admin.grpc.pb.h"
#include "server/api/admin_api.h"
#include "server/api/admin_calls.h"
#include "server/api/auth.h"

namespace edgefleet::server {

class AdminGrpcService final : public grpc::Service {
 public:
  AdminGrpcService(AdminApi& api, const Authenticator& auth, ServerMetrics& metrics);

  grpc::Status PushModel(grpc::ServerContext*, grpc::ServerReader<v1::PushModelRequest>*,
                         v1::ModelVersion*);

 private:
  // Runs a unary table entry on a serialized request.
  grpc::Status Unary(const AdminCall& call, grpc::ServerContext* context,
                     const grpc::ByteBuffer& request, grpc::ByteBuffer* response);

  // Authenticates, authorizes `method`'s table entry, runs `call` and records metrics.
  template <typename Response, typename Call>
  grpc::Status Handle(grpc::ServerContext* context, const char* method, Response* response,
                      Call call);

  AdminApi& api_;
  AdminDispatcher dispatcher_;
  ServerMetrics& metrics_;
  // gRPC keeps pointers to the method paths ("/edgefleet.v1.AdminService/ListDevices").
  std::deque<std::string> paths_;
};

}  // namespace edgefleet::server
