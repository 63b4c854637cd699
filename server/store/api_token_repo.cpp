#include "server/store/api_token_repo.h"

#include "server/store/internal/transaction.h"

namespace edgefleet::server {

using internal::WithTransaction;

absl::Status ApiTokenRepo::Upsert(const std::string& name, const std::string& role,
                                  const std::string& token_hash) {
  return WithTransaction(db_, "store API token '" + name + "'", [&](pqxx::work& tx) {
    tx.exec_params(
        "INSERT INTO api_tokens (name, role, token_hash) VALUES ($1, $2, $3) "
        "ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, token_hash = EXCLUDED.token_hash",
        name, role, pqxx::binarystring(token_hash));
    return absl::OkStatus();
  });
}

absl::StatusOr<ApiTokenRecord> ApiTokenRepo::FindByHash(const std::string& token_hash) {
  return WithTransaction(
      db_, "look up API token", [&](pqxx::work& tx) -> absl::StatusOr<ApiTokenRecord> {
        pqxx::result r = tx.exec_params("SELECT name, role FROM api_tokens WHERE token_hash = $1",
                                        pqxx::binarystring(token_hash));
        if (r.empty()) return absl::NotFoundError("unknown API token");
        return ApiTokenRecord{r[0][0].as<std::string>(), r[0][1].as<std::string>()};
      });
}

absl::StatusOr<bool> ApiTokenRepo::Any() {
  return WithTransaction(db_, "count API tokens", [](pqxx::work& tx) -> absl::StatusOr<bool> {
    return tx.exec1("SELECT EXISTS (SELECT 1 FROM api_tokens)")[0].as<bool>();
  });
}

}  // namespace edgefleet::server
