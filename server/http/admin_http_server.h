// The admin HTTP port: REST JSON under /v1/ (protobuf JSON mapping of the admin messages; one
// route per entry of the admin call table, admin_calls.h, served through the same dispatcher as
// gRPC), plus /metrics, /healthz and /readyz.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/metrics/metrics.h"
#include "server/api/admin_api.h"
#include "server/api/admin_calls.h"
#include "server/api/auth.h"

namespace httplib {
class Server;
}

namespace edgefleet::server {

class AdminHttpServer {
 public:
  // The largest JSON request body; a larger one is refused with HTTP 413 and an ErrorBody.
  static constexpr uint64_t kMaxJsonBodyBytes = 1 << 20;

  // `ready` reports whether the server can serve (database reachable, schema current).
  AdminHttpServer(AdminApi& api, const Authenticator& auth, metrics::Registry& registry,
                  ServerMetrics& metrics, std::function<absl::Status()> ready);
  ~AdminHttpServer();

  // Binds host:port (port 0 picks a free one) and serves on a background thread.
  absl::StatusOr<int> Start(const std::string& host, int port);
  void Stop();

 private:
  void RegisterRoutes();
  // The table's unary calls as REST routes.
  void RegisterCallRoutes();
  // The raw-body model upload (PushModel) at `pattern`.
  void RegisterUploadRoute(const AdminCall& call, const std::string& pattern);

  AdminApi& api_;
  AdminDispatcher dispatcher_;
  metrics::Registry& registry_;
  ServerMetrics& metrics_;
  std::function<absl::Status()> ready_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
};

// Fills `message` from a REST request's JSON body (protobuf JSON mapping; empty means all
// defaults). InvalidArgument naming the message type when the body does not parse.
absl::Status ParseJsonBody(const std::string& body, google::protobuf::Message* message);

// HTTP status for an absl status code (the inverse of grpc-gateway's mapping).
int HttpStatusFor(absl::StatusCode code);

}  // namespace edgefleet::server
