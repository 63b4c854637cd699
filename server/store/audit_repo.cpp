#include "server/store/audit_repo.h"

#include "server/store/internal/transaction.h"

namespace edgefleet::server {

absl::Status AuditRepo::Record(const std::string& actor, const std::string& action,
                               const std::string& detail_json) {
  return internal::WithTransaction(db_, "record audit entry '" + action + "'", [&](pqxx::work& tx) {
    tx.exec_params("INSERT INTO audit_log (actor, action, detail) VALUES ($1, $2, $3::jsonb)",
                   actor, action, detail_json.empty() ? std::string("{}") : detail_json);
    return absl::OkStatus();
  });
}

}  // namespace edgefleet::server
