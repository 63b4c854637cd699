#include "server/store/database.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/core/logging.h"
#include "server/store/internal/connection_pool.h"
#include "server/store/internal/transaction.h"

namespace edgefleet::server {

namespace {

// Serializes Migrate() across server replicas sharing one database ("edgefleet" in ASCII).
constexpr int64_t kMigrationLockKey = 0x6564676566'6c6565;

constexpr const char* kCreateSchemaMigrations = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
  version integer PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
))sql";

constexpr char kStoreErrorPayload[] = "type.edgefleet.dev/store-error";

}  // namespace

bool IsStoreError(const absl::Status& status) {
  return status.GetPayload(kStoreErrorPayload).has_value();
}

namespace internal {
namespace {

absl::Status ClassifyException(absl::string_view what, const std::exception& e) {
  std::string message = absl::StrCat(what, ": ", absl::StripAsciiWhitespace(e.what()));
  if (dynamic_cast<const pqxx::unique_violation*>(&e) != nullptr) {
    return absl::AlreadyExistsError(message);
  }
  if (dynamic_cast<const pqxx::foreign_key_violation*>(&e) != nullptr) {
    // PostgreSQL words the two directions differently: a missing parent on insert/update, or a
    // parent that is still referenced on update/delete.
    if (absl::StrContains(e.what(), "is still referenced")) {
      return absl::FailedPreconditionError(message);
    }
    return absl::NotFoundError(message);
  }
  if (dynamic_cast<const pqxx::check_violation*>(&e) != nullptr ||
      dynamic_cast<const pqxx::not_null_violation*>(&e) != nullptr ||
      dynamic_cast<const pqxx::data_exception*>(&e) != nullptr) {
    return absl::InvalidArgumentError(message);
  }
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr ||
      dynamic_cast<const pqxx::statement_completion_unknown*>(&e) != nullptr) {
    return absl::UnavailableError(absl::StrCat(message, " (outcome unknown)"));
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
      dynamic_cast<const pqxx::transaction_rollback*>(&e) != nullptr ||
      dynamic_cast<const pqxx::insufficient_resources*>(&e) != nullptr) {
    return absl::UnavailableError(message);
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e); sql != nullptr) {
    // Class 22 is "data exception" (bad JSON, out-of-range numbers...); class 57 "operator
    // intervention" (server shutting down).
    if (absl::StartsWith(sql->sqlstate(), "22")) return absl::InvalidArgumentError(message);
    if (absl::StartsWith(sql->sqlstate(), "57")) return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

}  // namespace

absl::Status StatusFromException(absl::string_view what, const std::exception& e) {
  absl::Status status = ClassifyException(what, e);
  status.SetPayload(kStoreErrorPayload, absl::Cord());
  return status;
}

}  // namespace internal

std::string RedactDatabaseUrl(const std::string& url) {
  std::string out = url;
  // URI form: scheme://user:password@host...
  if (size_t scheme = out.find("://"); scheme != std::string::npos) {
    size_t authority = scheme + 3;
    size_t end = out.find_first_of("/?", authority);
    size_t at = out.rfind('@', end == std::string::npos ? out.size() : end);
    if (at != std::string::npos && at > authority) {
      size_t colon = out.find(':', authority);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // Key/value form or URI query parameter: password=secret.
  for (size_t pos = out.find("password="); pos != std::string::npos;
       pos = out.find("password=", pos + 1)) {
    size_t start = pos + 9;
    size_t end = out.find_first_of(" &", start);
    if (end == std::string::npos) end = out.size();
    out.replace(start, end - start, "***");
  }
  return out;
}

Database::Database(std::unique_ptr<internal::ConnectionPool> pool, std::string redacted_url,
                   std::vector<Migration> migrations)
    : pool_(std::move(pool)),
      redacted_url_(std::move(redacted_url)),
      migrations_(std::move(migrations)) {}

Database::~Database() = default;

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const DatabaseOptions& options) {
  return Open(options, EmbeddedMigrations());
}

absl::StatusOr<std::unique_ptr<Database>> Database::Open(const DatabaseOptions& options,
                                                         std::vector<Migration> migrations) {
  if (options.url.empty()) return absl::InvalidArgumentError("database url is empty");
  if (options.pool_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("database pool_size must be at least 1, got ", options.pool_size));
  }
  std::sort(migrations.begin(), migrations.end(),
            [](const Migration& a, const Migration& b) { return a.version < b.version; });
  std::string redacted = RedactDatabaseUrl(options.url);
  auto pool = std::make_unique<internal::ConnectionPool>(
      options.url, redacted, options.pool_size,
      std::chrono::milliseconds(std::max(0, options.acquire_timeout_ms)));
  if (absl::Status s = pool->Warm(); !s.ok()) return s;
  return std::unique_ptr<Database>(
      new Database(std::move(pool), std::move(redacted), std::move(migrations)));
}

absl::Status Database::Run(absl::string_view name, const std::function<absl::Status(Tx&)>& body) {
  constexpr int kAttempts = 2;
  absl::Status status;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    auto lease = pool_->Acquire();
    if (!lease.ok()) return lease.status();
    bool retry = false;
    try {
      pqxx::work work(lease->connection());
      internal::TxState state(work);
      Tx tx = MakeTx(name, &state);
      status = body(tx);
      // A statement failed and the caller carried on: PostgreSQL aborted the transaction anyway.
      if (status.ok() && !state.failure.ok()) status = state.failure;
      if (status.ok()) {
        work.commit();
        return status;
      }
      // Rolled back by work's destructor.
      if (state.broken) lease->MarkBroken();
      retry = state.retry;
    } catch (const pqxx::statement_completion_unknown& e) {
      lease->MarkBroken();
      return internal::StatusFromException(name, e);
    } catch (const pqxx::in_doubt_error& e) {
      // The commit may or may not have landed: never retry.
      lease->MarkBroken();
      return internal::StatusFromException(name, e);
    } catch (const pqxx::broken_connection& e) {
      lease->MarkBroken();
      status = internal::StatusFromException(name, e);
      retry = true;
    } catch (const pqxx::transaction_rollback& e) {
      status = internal::StatusFromException(name, e);
      retry = true;
    } catch (const std::exception& e) {
      return internal::StatusFromException(name, e);
    }
    if (!retry) return status;
    if (attempt + 1 < kAttempts) {
      Logger("store")->warn("transaction={} retried: {}", std::string(name),
                            std::string(status.message()));
    }
  }
  return status;
}

int Database::LatestKnownVersion() const {
  return migrations_.empty() ? 0 : migrations_.back().version;
}

absl::Status Database::Ping() {
  return internal::WithTransaction(*this, "ping database", [](pqxx::work& tx) {
    tx.exec("SELECT 1");
    return absl::OkStatus();
  });
}

absl::StatusOr<int> Database::SchemaVersion() {
  return internal::WithTransaction(
      *this, "read schema version", [](pqxx::work& tx) -> absl::StatusOr<int> {
        pqxx::row exists = tx.exec1("SELECT to_regclass('schema_migrations') IS NOT NULL");
        if (!exists[0].as<bool>()) return 0;
        return tx.exec1("SELECT COALESCE(max(version), 0) FROM schema_migrations")[0].as<int>();
      });
}

absl::Status Database::Migrate() {
  const int latest = LatestKnownVersion();
  auto lock = [](pqxx::work& tx) {
    tx.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLockKey);
  };
  absl::StatusOr<int> current = internal::WithTransaction(
      *this, "prepare schema_migrations", [&](pqxx::work& tx) -> absl::StatusOr<int> {
        lock(tx);
        tx.exec(kCreateSchemaMigrations);
        return tx.exec1("SELECT COALESCE(max(version), 0) FROM schema_migrations")[0].as<int>();
      });
  if (!current.ok()) return current.status();
  if (*current > latest) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database schema version ", *current, " is newer than this binary (max ", latest, ")"));
  }
  for (const Migration& m : migrations_) {
    absl::Status s = internal::WithTransaction(
        *this, absl::StrCat("apply migration ", m.version, "_", m.name),
        [&](pqxx::work& tx) -> absl::Status {
          lock(tx);
          // Another replica may have applied it while we waited for the lock.
          if (!tx.exec_params("SELECT 1 FROM schema_migrations WHERE version = $1", m.version)
                   .empty()) {
            return absl::OkStatus();
          }
          tx.exec(m.sql);
          tx.exec_params("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version,
                         m.name);
          return absl::OkStatus();
        });
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace edgefleet::server
