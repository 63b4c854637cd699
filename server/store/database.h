// Database is the server's PostgreSQL handle: a connection pool plus schema migrations.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/store/migrations.h"

namespace edgefleet::server {

namespace internal {
class ConnectionPool;
struct TxState;
struct TxAccess;
}  // namespace internal

// One open transaction, lent to the function given to Transactor::Transact. Repository methods
// take it so that the caller decides what commits together. Valid only during that call.
class Tx {
 public:
  Tx(const Tx&) = delete;
  Tx& operator=(const Tx&) = delete;
  ~Tx() = default;

  // The name given to Transact, for errors and logs.
  const std::string& name() const { return name_; }

 private:
  friend class Transactor;
  friend struct internal::TxAccess;
  Tx(std::string name, internal::TxState* state) : name_(std::move(name)), state_(state) {}

  std::string name_;
  internal::TxState* state_;  // null in a fake's transaction
};

// Runs functions in one transaction each: the seam that lets API and rollout logic run against
// fake stores (tests/fakes) as well as PostgreSQL (Database).
class Transactor {
 public:
  virtual ~Transactor() = default;

  // Calls fn(Tx&) -> absl::Status or absl::StatusOr<T> inside ONE transaction: commits when it
  // returns OK, rolls back when it returns an error or throws (an exception becomes a status
  // prefixed with `name`). The database may call fn a second time on a fresh transaction after a
  // serialization failure, deadlock or broken connection (nothing of the first call committed),
  // so fn must not keep state between calls or act outside the database before it returns.
  template <class F>
  auto Transact(absl::string_view name, F&& fn) -> std::invoke_result_t<F&, Tx&> {
    using R = std::invoke_result_t<F&, Tx&>;
    if constexpr (std::is_same_v<R, absl::Status>) {
      return Run(name, [&](Tx& tx) -> absl::Status { return fn(tx); });
    } else {
      static_assert(std::is_same_v<R, absl::StatusOr<typename R::value_type>>,
                    "the transaction body must return absl::Status or absl::StatusOr<T>");
      std::optional<R> result;
      absl::Status status = Run(name, [&](Tx& tx) -> absl::Status {
        result.emplace(fn(tx));
        return result->status();
      });
      if (!status.ok()) return status;  // fn's error, or the commit's
      return *std::move(result);
    }
  }

 protected:
  // Runs body in one transaction; see Transact.
  virtual absl::Status Run(absl::string_view name,
                           const std::function<absl::Status(Tx&)>& body) = 0;
  // For implementations: a Tx carrying `state` (null for a fake).
  static Tx MakeTx(absl::string_view name, internal::TxState* state) {
    return Tx(std::string(name), state);
  }
};

struct DatabaseOptions {
  // libpq connection string, e.g. postgresql://user:pass@host:5432/edgefleet.
  std::string url;
  int pool_size = 4;
  // How long a caller waits for a free pooled connection before getting Unavailable.
  int acquire_timeout_ms = 10'000;
};

class Database final : public Transactor {
 public:
  // Unavailable "database unreachable at <url without password>: <reason>" when it cannot
  // connect; InvalidArgument on an empty url or a pool_size < 1.
  static absl::StatusOr<std::unique_ptr<Database>> Open(const DatabaseOptions& options);
  // Same, with an explicit migration list instead of the embedded one (tests).
  static absl::StatusOr<std::unique_ptr<Database>> Open(const DatabaseOptions& options,
                                                        std::vector<Migration> migrations);
  ~Database() override;

  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Applies every pending migration, each in its own transaction together with its
  // schema_migrations row; safe to run from several replicas at once (advisory lock).
  // FailedPrecondition "database schema version N is newer than this binary (max M)".
  absl::Status Migrate();
  absl::Status Ping();
  // Highest applied migration, 0 for an empty database.
  absl::StatusOr<int> SchemaVersion();
  int LatestKnownVersion() const;
  // The url with any password replaced by "***", for logs and errors.
  const std::string& redacted_url() const { return redacted_url_; }

  // For the repositories in this folder.
  internal::ConnectionPool& pool() const { return *pool_; }

 protected:
  // One pooled pqxx transaction; retried once as Transact describes.
  absl::Status Run(absl::string_view name, const std::function<absl::Status(Tx&)>& body) override;

 private:
  Database(std::unique_ptr<internal::ConnectionPool> pool, std::string redacted_url,
           std::vector<Migration> migrations);

  std::unique_ptr<internal::ConnectionPool> pool_;
  std::string redacted_url_;
  std::vector<Migration> migrations_;
};

// True for a status made from a database error. Its message may quote SQL, table names and row
// content, and the connection pool's may name the database: APIs facing devices must not pass
// such messages on (the pool's errors are all Unavailable).
bool IsStoreError(const absl::Status& status);

// Replaces the password in a libpq URL or key=value connection string with "***".
std::string RedactDatabaseUrl(const std::string& url);

}  // namespace edgefleet::server
