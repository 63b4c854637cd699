// AuditRepo appends one row per mutating admin call.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "server/store/database.h"

namespace edgefleet::server {

class AuditRepo {
 public:
  explicit AuditRepo(Database& db) : db_(db) {}

  // `detail_json` must be a JSON value (empty means {}); InvalidArgument otherwise.
  absl::Status Record(const std::string& actor, const std::string& action,
                      const std::string& detail_json);

 private:
  Database& db_;
};

}  // namespace edgefleet::server
