// Wires the control plane together: database, key material, repositories, APIs and the three
// listeners (device mTLS gRPC, admin gRPC, admin HTTP). main.cpp only parses config and runs it.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "edgefleet/v1/config.pb.h"

namespace edgefleet::server {

struct BoundPorts {
  int device = 0;
  int admin_grpc = 0;
  int admin_http = 0;
};

class Server {
 public:
  // Defaults filled in for every unset field of `config`.
  static v1::ServerConfig WithDefaults(v1::ServerConfig config);

  // Fails with a clear message when the database is unreachable or its schema is newer.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const v1::ServerConfig& config,
                                                       const Clock& clock);
  virtual ~Server() = default;

  virtual BoundPorts ports() const = 0;
  // The admin token generated on first start (empty on later starts): printed once by main.
  virtual std::string generated_admin_token() const = 0;
  virtual void Wait() = 0;
  virtual void Shutdown() = 0;
};

}  // namespace edgefleet::server
