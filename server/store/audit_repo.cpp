#include "server/store/audit_repo.h"

#include "server/store/internal/steps.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {

absl::Status AuditRepo::Record(Tx& txn, const std::string& actor, const std::string& action,
                               const std::string& detail_json) {
  return internal::InTx(txn, "record audit entry '" + action + "'", [&](pqxx::work& tx) {
    internal::InsertAuditRow(tx, actor, action, detail_json);
    return absl::OkStatus();
  });
}

namespace internal {

void InsertAuditRow(pqxx::work& tx, const std::string& actor, const std::string& action,
                    const std::string& detail_json) {
  tx.exec_params("INSERT INTO audit_log (actor, action, detail) VALUES ($1, $2, $3::jsonb)", actor,
                 action, detail_json.empty() ? std::string("{}") : detail_json);
}

}  // namespace internal

}  // namespace edgefleet::server
