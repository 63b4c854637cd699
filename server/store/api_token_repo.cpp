#include "server/store/api_token_repo.h"

#include "absl/strings/str_cat.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {

using internal::WithTransaction;

namespace {

constexpr char kColumns[] =
    "name, role, floor(extract(epoch FROM created_at))::bigint, "
    "floor(extract(epoch FROM expires_at))::bigint, floor(extract(epoch FROM revoked_at))::bigint, "
    "created_by, description";

std::optional<int64_t> OptionalSeconds(const pqxx::field& field) {
  if (field.is_null()) return std::nullopt;
  return field.as<int64_t>();
}

ApiTokenRecord RecordFromRow(const pqxx::row& row) {
  return ApiTokenRecord{row[0].as<std::string>(), row[1].as<std::string>(),
                        row[2].as<int64_t>(),     OptionalSeconds(row[3]),
                        OptionalSeconds(row[4]),  row[5].as<std::string>(),
                        row[6].as<std::string>()};
}

}  // namespace

absl::Status ApiTokenRepo::Upsert(Tx& txn, const std::string& name, const std::string& role,
                                  const std::string& token_hash) {
  return internal::InTx(txn, "store API token '" + name + "'", [&](pqxx::work& tx) {
    tx.exec_params(
        "INSERT INTO api_tokens (name, role, token_hash) VALUES ($1, $2, $3) "
        "ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, token_hash = EXCLUDED.token_hash, "
        "expires_at = NULL, revoked_at = NULL",
        name, role, pqxx::binarystring(token_hash));
    return absl::OkStatus();
  });
}

absl::StatusOr<ApiTokenRecord> ApiTokenRepo::Insert(Tx& txn, const ApiTokenRecord& record,
                                                    const std::string& token_hash) {
  return internal::InTx(
      txn, absl::StrCat("create API token '", record.name, "'"),
      [&](pqxx::work& tx) -> absl::StatusOr<ApiTokenRecord> {
        pqxx::result r = tx.exec_params(
            absl::StrCat("INSERT INTO api_tokens (name, role, token_hash, expires_at, created_by, "
                         "description) VALUES ($1, $2, $3, CASE WHEN $4 THEN to_timestamp($5) "
                         "END, $6, $7) RETURNING ",
                         kColumns),
            record.name, record.role, pqxx::binarystring(token_hash),
            record.expires_at_unix.has_value(), record.expires_at_unix.value_or(0),
            record.created_by, record.description);
        return RecordFromRow(r[0]);
      });
}

absl::StatusOr<ApiTokenRecord> ApiTokenRepo::FindByHash(const std::string& token_hash) {
  return WithTransaction(
      db_, "look up API token", [&](pqxx::work& tx) -> absl::StatusOr<ApiTokenRecord> {
        pqxx::result r = tx.exec_params(
            absl::StrCat("SELECT ", kColumns, " FROM api_tokens WHERE token_hash = $1"),
            pqxx::binarystring(token_hash));
        if (r.empty()) return absl::NotFoundError("unknown API token");
        return RecordFromRow(r[0]);
      });
}

absl::StatusOr<Page<ApiTokenRecord>> ApiTokenRepo::ListPage(const PageRequest& page) {
  return WithTransaction(
      db_, "list a page of API tokens",
      [&](pqxx::work& tx) -> absl::StatusOr<Page<ApiTokenRecord>> {
        std::vector<ApiTokenRecord> records;
        for (const pqxx::row& row :
             tx.exec_params(absl::StrCat("SELECT ", kColumns,
                                         " FROM api_tokens WHERE name > $1 ORDER BY name LIMIT $2"),
                            page.after, static_cast<int64_t>(page.size + 1))) {
          records.push_back(RecordFromRow(row));
        }
        return FinishPage(std::move(records), page.size,
                          [](const ApiTokenRecord& r) { return r.name; });
      });
}

absl::StatusOr<ApiTokenRecord> ApiTokenRepo::Revoke(Tx& txn, const std::string& name,
                                                    int64_t now_unix) {
  return internal::InTx(
      txn, absl::StrCat("revoke API token '", name, "'"),
      [&](pqxx::work& tx) -> absl::StatusOr<ApiTokenRecord> {
        pqxx::result r =
            tx.exec_params(absl::StrCat("UPDATE api_tokens SET revoked_at = coalesce(revoked_at, "
                                        "to_timestamp($2)) WHERE name = $1 RETURNING ",
                                        kColumns),
                           name, now_unix);
        if (r.empty()) return absl::NotFoundError(absl::StrCat("no API token named '", name, "'"));
        return RecordFromRow(r[0]);
      });
}

absl::StatusOr<bool> ApiTokenRepo::Any() {
  return WithTransaction(db_, "count API tokens", [](pqxx::work& tx) -> absl::StatusOr<bool> {
    return tx.exec1("SELECT EXISTS (SELECT 1 FROM api_tokens)")[0].as<bool>();
  });
}

}  // namespace edgefleet::server
