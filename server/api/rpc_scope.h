// Per-call bookkeeping shared by the gRPC services: latency and outcome metrics, and the
// absl -> gRPC status mapping, so each handler is only its business logic.
#pragma once

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "server/api/grpc_status.h"
#include "server/metrics/server_metrics.h"

namespace edgefleet::server {

class RpcScope {
 public:
  RpcScope(ServerMetrics& metrics, std::string service, std::string method)
      : metrics_(metrics),
        service_(std::move(service)),
        method_(std::move(method)),
        start_(std::chrono::steady_clock::now()) {}

  grpc::Status Finish(const absl::Status& status) {
    std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start_;
    metrics_.rpc_duration.Add({{"service", service_}, {"method", method_}})
        .Observe(elapsed.count());
    metrics_.rpc_requests
        .Add({{"service", service_},
              {"method", method_},
              {"code", absl::StatusCodeToString(status.code())}})
        .Increment();
    return ToGrpcStatus(status);
  }

 private:
  ServerMetrics& metrics_;
  std::string service_;
  std::string method_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace edgefleet::server
