// The admin API declared once: one entry per AdminService RPC naming its permission, the
// AdminApi handler and its REST route. The gRPC service and the REST gateway are both built by
// walking this table, so a call is written once and none goes without a permission.
#pragma once

#include <google/protobuf/message.h>

#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/api/admin_api.h"
#include "server/api/auth.h"

namespace edgefleet::server {

enum class HttpMethod { kGet, kPost, kDelete };

// How a REST request fills the call's request message, besides `{field}`s in the path (string
// fields, set last).
enum class RestBody {
  kNone,       // query parameters fill scalar fields of the same name; the body is ignored
  kJson,       // the body is the request message's protobuf JSON (empty means all defaults)
  kRawUpload,  // streaming upload with its own route (PushModel); see AdminHttpServer
};

struct RestRoute {
  HttpMethod method;
  std::string_view path;  // "/v1/devices/{device_id}/labels"
  RestBody body;
};

using AdminHandler = std::function<absl::StatusOr<std::unique_ptr<google::protobuf::Message>>(
    AdminApi& api, const Principal& who, const google::protobuf::Message& request)>;

struct AdminCall {
  std::string_view rpc;  // the method's name in edgefleet.v1.AdminService
  Permission permission;
  // The request and response message types (their default instances).
  const google::protobuf::Message* request_prototype;
  const google::protobuf::Message* response_prototype;
  // Null for streaming calls, which each face serves itself (PushModel).
  AdminHandler handler;
  std::optional<RestRoute> rest;
};

// Every admin call, in the order of the proto service.
const std::vector<AdminCall>& AdminCalls();
// The entry for `rpc`, or null.
const AdminCall* FindAdminCall(std::string_view rpc);

// Authenticates, authorizes and runs admin calls: the one path both faces take.
class AdminDispatcher {
 public:
  AdminDispatcher(AdminApi& api, const Authenticator& auth) : api_(api), auth_(auth) {}

  // The caller behind `authorization` ("Bearer <token>") if it may make `call`:
  // Unauthenticated or PermissionDenied otherwise.
  absl::StatusOr<Principal> Admit(const AdminCall& call, std::string_view authorization) const;
  // Runs a unary call for an admitted principal. `request` must be of the call's request type.
  absl::StatusOr<std::unique_ptr<google::protobuf::Message>> Run(
      const AdminCall& call, const Principal& who, const google::protobuf::Message& request) const;

  AdminApi& api() const { return api_; }

 private:
  AdminApi& api_;
  const Authenticator& auth_;
};

}  // namespace edgefleet::server
