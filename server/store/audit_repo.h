// AuditStore appends one row per mutating admin call.
// AuditRepo is its PostgreSQL implementation; its mutating methods run in the caller's Tx.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "server/store/database.h"

namespace edgefleet::server {

class AuditStore {
 public:
  virtual ~AuditStore() = default;

  // `detail_json` must be a JSON value (empty means {}); InvalidArgument otherwise.
  virtual absl::Status Record(Tx& tx, const std::string& actor, const std::string& action,
                              const std::string& detail_json) = 0;
};

// The PostgreSQL AuditStore.
class AuditRepo final : public AuditStore {
 public:
  absl::Status Record(Tx& tx, const std::string& actor, const std::string& action,
                      const std::string& detail_json) override;
};

}  // namespace edgefleet::server
