#include "server/store/patch_repo.h"

#include "server/store/internal/transaction.h"

namespace edgefleet::server {
namespace {

using internal::WithTransaction;

const char* StateName(PatchRecord::State state) {
  switch (state) {
    case PatchRecord::State::kPending:
      return "pending";
    case PatchRecord::State::kReady:
      return "ready";
    case PatchRecord::State::kNotSmaller:
      return "not_smaller";
    case PatchRecord::State::kFailed:
      return "failed";
  }
  return "failed";
}

PatchRecord::State ParseState(const std::string& name) {
  if (name == "pending") return PatchRecord::State::kPending;
  if (name == "ready") return PatchRecord::State::kReady;
  if (name == "not_smaller") return PatchRecord::State::kNotSmaller;
  return PatchRecord::State::kFailed;
}

constexpr char kColumns[] =
    "from_sha256, to_sha256, state, codec, coalesce(patch_sha256, ''::bytea), size_bytes, "
    "compute_seconds, detail";

PatchRecord FromRow(const pqxx::row& row) {
  PatchRecord r;
  r.from_sha256 = pqxx::binarystring(row[0]).str();
  r.to_sha256 = pqxx::binarystring(row[1]).str();
  r.state = ParseState(row[2].as<std::string>());
  r.codec = row[3].as<std::string>();
  r.patch_sha256 = pqxx::binarystring(row[4]).str();
  r.size_bytes = row[5].as<uint64_t>();
  r.compute_seconds = row[6].as<double>();
  r.detail = row[7].as<std::string>();
  return r;
}

}  // namespace

absl::StatusOr<bool> PatchRepo::Enqueue(Tx& txn, const std::string& from_sha256,
                                        const std::string& to_sha256) {
  return internal::InTx(txn, "queue patch", [&](pqxx::work& tx) -> absl::StatusOr<bool> {
    pqxx::result r = tx.exec_params(
        "INSERT INTO patches (from_sha256, to_sha256, state) VALUES ($1, $2, 'pending') "
        "ON CONFLICT DO NOTHING RETURNING 1",
        pqxx::binarystring(from_sha256), pqxx::binarystring(to_sha256));
    return !r.empty();
  });
}

absl::StatusOr<std::optional<PatchClaim>> PatchRepo::Claim(Tx& txn, const std::string& owner,
                                                           std::chrono::seconds lease,
                                                           int max_attempts) {
  return internal::InTx(
      txn, "claim a patch computation",
      [&](pqxx::work& tx) -> absl::StatusOr<std::optional<PatchClaim>> {
        tx.exec_params(
            "UPDATE patches SET state = 'failed', lease_owner = NULL, lease_expires_at = NULL, "
            "detail = 'computation abandoned after ' || attempts || ' attempts: each replica "
            "computing it stopped before it finished', updated_at = now() "
            "WHERE state = 'pending' AND lease_expires_at < now() AND attempts >= $1",
            max_attempts);
        // SKIP LOCKED: a pair another replica is claiming right now is not waited for; its row
        // is re-checked after locking, so a lease taken meanwhile is seen.
        pqxx::result r = tx.exec_params(
            "UPDATE patches p SET lease_owner = $1, "
            "lease_expires_at = now() + $2::float8 * interval '1 second', attempts = p.attempts + "
            "1, "
            "updated_at = now() "
            "FROM (SELECT from_sha256, to_sha256 FROM patches WHERE state = 'pending' "
            "AND (lease_expires_at IS NULL OR lease_expires_at < now()) AND attempts < $3 "
            "ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) claimable "
            "WHERE p.from_sha256 = claimable.from_sha256 AND p.to_sha256 = claimable.to_sha256 "
            "RETURNING p.from_sha256, p.to_sha256, p.attempts",
            owner, static_cast<int64_t>(lease.count()), max_attempts);
        if (r.empty()) return std::optional<PatchClaim>();
        return std::optional<PatchClaim>(PatchClaim{pqxx::binarystring(r[0][0]).str(),
                                                    pqxx::binarystring(r[0][1]).str(),
                                                    r[0][2].as<int>()});
      });
}

absl::StatusOr<bool> PatchRepo::Renew(Tx& txn, const std::string& from_sha256,
                                      const std::string& to_sha256, const std::string& owner,
                                      std::chrono::seconds lease) {
  return internal::InTx(txn, "renew a patch lease", [&](pqxx::work& tx) -> absl::StatusOr<bool> {
    return !tx.exec_params(
                  "UPDATE patches SET lease_expires_at = now() + $4::float8 * interval '1 second' "
                  "WHERE from_sha256 = $1 AND to_sha256 = $2 AND state = 'pending' "
                  "AND lease_owner = $3 RETURNING 1",
                  pqxx::binarystring(from_sha256), pqxx::binarystring(to_sha256), owner,
                  static_cast<int64_t>(lease.count()))
                .empty();
  });
}

absl::StatusOr<bool> PatchRepo::Finish(Tx& txn, const PatchRecord& record,
                                       const std::string& owner) {
  return internal::InTx(txn, "record patch", [&](pqxx::work& tx) -> absl::StatusOr<bool> {
    // A patch digest exists only for ready rows; others store NULL. $5 is always referenced
    // (PostgreSQL cannot type a parameter the statement does not use).
    return !tx.exec_params(
                  "UPDATE patches SET state = $3, codec = $4, "
                  "patch_sha256 = NULLIF($5::bytea, ''::bytea), size_bytes = $6, "
                  "compute_seconds = $7, detail = $8, lease_owner = NULL, "
                  "lease_expires_at = NULL, updated_at = now() "
                  "WHERE from_sha256 = $1 AND to_sha256 = $2 AND state = 'pending' "
                  "AND lease_owner = $9 RETURNING 1",
                  pqxx::binarystring(record.from_sha256), pqxx::binarystring(record.to_sha256),
                  StateName(record.state), record.codec, pqxx::binarystring(record.patch_sha256),
                  static_cast<int64_t>(record.size_bytes), record.compute_seconds, record.detail,
                  owner)
                .empty();
  });
}

absl::StatusOr<std::optional<PatchRecord>> PatchRepo::Find(const std::string& from_sha256,
                                                           const std::string& to_sha256) {
  // Asked on check-ins of devices a rollout has not reached yet: one prepared statement.
  return internal::AutocommitOnce(
      db_, "find patch",
      [&](pqxx::nontransaction& tx) -> absl::StatusOr<std::optional<PatchRecord>> {
        pqxx::result r =
            internal::ExecPrepared(tx, "patch_find",
                                   std::string("SELECT ") + kColumns +
                                       " FROM patches WHERE from_sha256 = $1 AND to_sha256 = $2",
                                   pqxx::binarystring(from_sha256), pqxx::binarystring(to_sha256));
        if (r.empty()) return std::optional<PatchRecord>();
        return std::optional<PatchRecord>(FromRow(r[0]));
      });
}

absl::StatusOr<std::optional<PatchRecord>> PatchRepo::FindByPatch(const std::string& patch_sha256) {
  return WithTransaction(
      db_, "find patch by digest",
      [&](pqxx::work& tx) -> absl::StatusOr<std::optional<PatchRecord>> {
        pqxx::result r =
            tx.exec_params(std::string("SELECT ") + kColumns +
                               " FROM patches WHERE patch_sha256 = $1 AND state = 'ready' LIMIT 1",
                           pqxx::binarystring(patch_sha256));
        if (r.empty()) return std::optional<PatchRecord>();
        return std::optional<PatchRecord>(FromRow(r[0]));
      });
}

absl::StatusOr<PatchBacklog> PatchRepo::Backlog() {
  return WithTransaction(
      db_, "count patches by state", [&](pqxx::work& tx) -> absl::StatusOr<PatchBacklog> {
        PatchBacklog backlog;
        backlog.by_state = {{"pending", 0}, {"ready", 0}, {"not_smaller", 0}, {"failed", 0}};
        for (const pqxx::row& row :
             tx.exec("SELECT state, count(*), coalesce(extract(epoch FROM now() - "
                     "min(created_at)), 0)::float8 FROM patches GROUP BY 1")) {
          const std::string state = row[0].as<std::string>();
          backlog.by_state[state] = row[1].as<int64_t>();
          if (state == "pending") {
            backlog.oldest_pending_age_seconds = row[2].as<double>();
          }
        }
        return backlog;
      });
}

}  // namespace edgefleet::server
