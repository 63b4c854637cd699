#include "server/store/enrollment_token_repo.h"

#include "absl/strings/str_cat.h"
#include "server/store/internal/json.h"
#include "server/store/internal/steps.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {

using internal::WithTransaction;

absl::StatusOr<v1::EnrollmentToken> EnrollmentTokenRepo::Create(
    Tx& txn, const std::string& token_id, const std::string& token_hash, int max_uses,
    int64_t expires_at_unix, const Labels& labels, const std::string& description) {
  if (max_uses < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("enrollment token max_uses must be at least 1, got ", max_uses));
  }
  absl::Status s = internal::InTx(
      txn, absl::StrCat("create enrollment token '", token_id, "'"), [&](pqxx::work& tx) {
        tx.exec_params(
            "INSERT INTO enrollment_tokens (id, token_hash, labels, max_uses, expires_at, "
            "description) VALUES ($1, $2, $3::jsonb, $4, to_timestamp($5), $6)",
            token_id, pqxx::binarystring(token_hash), internal::LabelsToJson(labels), max_uses,
            expires_at_unix, description);
        return absl::OkStatus();
      });
  if (!s.ok()) return s;
  v1::EnrollmentToken token;
  token.set_token_id(token_id);
  token.set_max_uses(static_cast<uint32_t>(max_uses));
  token.set_uses(0);
  *token.mutable_expires_at() = internal::UnixToTimestamp(expires_at_unix);
  token.mutable_labels()->insert(labels.begin(), labels.end());
  token.set_description(description);
  return token;
}

namespace {

constexpr char kColumns[] =
    "id, max_uses, uses, floor(extract(epoch FROM expires_at))::bigint, labels::text, "
    "description, floor(extract(epoch FROM created_at))::bigint, "
    "floor(extract(epoch FROM revoked_at))::bigint";

absl::StatusOr<v1::EnrollmentToken> TokenFromRow(const pqxx::row& row) {
  v1::EnrollmentToken token;
  token.set_token_id(row[0].as<std::string>());
  token.set_max_uses(row[1].as<uint32_t>());
  token.set_uses(row[2].as<uint32_t>());
  *token.mutable_expires_at() = internal::UnixToTimestamp(row[3].as<int64_t>());
  auto labels = internal::LabelsFromJson(row[4].as<std::string>());
  if (!labels.ok()) return labels.status();
  token.mutable_labels()->insert(labels->begin(), labels->end());
  token.set_description(row[5].as<std::string>());
  *token.mutable_created_at() = internal::UnixToTimestamp(row[6].as<int64_t>());
  if (!row[7].is_null()) {
    *token.mutable_revoked_at() = internal::UnixToTimestamp(row[7].as<int64_t>());
  }
  return token;
}

}  // namespace

absl::StatusOr<Page<v1::EnrollmentToken>> EnrollmentTokenRepo::ListPage(const PageRequest& page) {
  return WithTransaction(
      db_, "list a page of enrollment tokens",
      [&](pqxx::work& tx) -> absl::StatusOr<Page<v1::EnrollmentToken>> {
        std::vector<v1::EnrollmentToken> tokens;
        for (const pqxx::row& row : tx.exec_params(
                 absl::StrCat("SELECT ", kColumns,
                              " FROM enrollment_tokens WHERE id > $1 ORDER BY id LIMIT $2"),
                 page.after, static_cast<int64_t>(page.size + 1))) {
          auto token = TokenFromRow(row);
          if (!token.ok()) return token.status();
          tokens.push_back(*std::move(token));
        }
        return FinishPage(std::move(tokens), page.size,
                          [](const v1::EnrollmentToken& t) { return t.token_id(); });
      });
}

absl::StatusOr<v1::EnrollmentToken> EnrollmentTokenRepo::Revoke(Tx& txn,
                                                                const std::string& token_id,
                                                                int64_t now_unix) {
  return internal::InTx(
      txn, absl::StrCat("revoke enrollment token '", token_id, "'"),
      [&](pqxx::work& tx) -> absl::StatusOr<v1::EnrollmentToken> {
        pqxx::result r = tx.exec_params(
            absl::StrCat("UPDATE enrollment_tokens SET revoked_at = coalesce(revoked_at, "
                         "to_timestamp($2)) WHERE id = $1 RETURNING ",
                         kColumns),
            token_id, now_unix);
        if (r.empty()) {
          return absl::NotFoundError(absl::StrCat("no enrollment token '", token_id, "'"));
        }
        return TokenFromRow(r[0]);
      });
}

absl::StatusOr<Labels> EnrollmentTokenRepo::Consume(Tx& txn, const std::string& token_hash,
                                                    int64_t now_unix) {
  return internal::InTx(txn, "consume enrollment token",
                        [&](pqxx::work& tx) -> absl::StatusOr<Labels> {
                          auto token = internal::ConsumeEnrollmentToken(tx, token_hash, now_unix);
                          if (!token.ok()) return token.status();
                          return std::move(token->labels);
                        });
}

namespace internal {

namespace {

// Why `token_hash` cannot be used now.
absl::Status UnusableTokenReason(pqxx::work& tx, const pqxx::binarystring& hash, int64_t now_unix) {
  pqxx::result why = tx.exec_params(
      "SELECT revoked_at IS NOT NULL, expires_at <= to_timestamp($2) FROM enrollment_tokens "
      "WHERE token_hash = $1",
      hash, now_unix);
  if (why.empty()) return absl::UnauthenticatedError("unknown enrollment token");
  if (why[0][0].as<bool>()) return absl::PermissionDeniedError("enrollment token revoked");
  if (why[0][1].as<bool>()) return absl::PermissionDeniedError("enrollment token expired");
  return absl::ResourceExhaustedError("enrollment token has no uses left");
}

// A token that can enroll one more device at time $2 ($1 is its hash).
constexpr char kUsableToken[] =
    "WHERE token_hash = $1 AND uses < max_uses AND expires_at > to_timestamp($2) "
    "AND revoked_at IS NULL";

absl::StatusOr<ConsumedToken> TokenFromIdAndLabels(const pqxx::row& row) {
  auto labels = LabelsFromJson(row[1].as<std::string>());
  if (!labels.ok()) return labels.status();
  return ConsumedToken{row[0].as<std::string>(), *std::move(labels)};
}

}  // namespace

absl::StatusOr<ConsumedToken> ConsumeEnrollmentToken(pqxx::work& tx, const std::string& token_hash,
                                                     int64_t now_unix) {
  pqxx::binarystring hash(token_hash);
  // Under READ COMMITTED a concurrent UPDATE re-checks the WHERE clause on the row's
  // latest version, so exactly max_uses callers succeed.
  pqxx::result used = tx.exec_params(absl::StrCat("UPDATE enrollment_tokens SET uses = uses + 1 ",
                                                  kUsableToken, " RETURNING id, labels::text"),
                                     hash, now_unix);
  if (!used.empty()) return TokenFromIdAndLabels(used[0]);
  return UnusableTokenReason(tx, hash, now_unix);
}

absl::StatusOr<ConsumedToken> PeekEnrollmentToken(pqxx::work& tx, const std::string& token_hash,
                                                  int64_t now_unix) {
  pqxx::binarystring hash(token_hash);
  pqxx::result usable =
      tx.exec_params(absl::StrCat("SELECT id, labels::text FROM enrollment_tokens ", kUsableToken),
                     hash, now_unix);
  if (!usable.empty()) return TokenFromIdAndLabels(usable[0]);
  return UnusableTokenReason(tx, hash, now_unix);
}

}  // namespace internal

}  // namespace edgefleet::server
