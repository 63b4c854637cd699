// Database is the server's PostgreSQL handle: a connection pool plus schema migrations.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/store/migrations.h"

namespace edgefleet::server {

namespace internal {
class ConnectionPool;
}  // namespace internal

struct DatabaseOptions {
  // libpq connection string, e.g. postgresql://user:pass@host:5432/edgefleet.
  std::string url;
  int pool_size = 4;
  // How long a caller waits for a free pooled connection before getting Unavailable.
  int acquire_timeout_ms = 10'000;
};

class Database {
 public:
  // Unavailable "database unreachable at <url without password>: <reason>" when it cannot
  // connect; InvalidArgument on an empty url or a pool_size < 1.
  static absl::StatusOr<std::unique_ptr<Database>> Open(const DatabaseOptions& options);
  // Same, with an explicit migration list instead of the embedded one (tests).
  static absl::StatusOr<std::unique_ptr<Database>> Open(const DatabaseOptions& options,
                                                        std::vector<Migration> migrations);
  ~Database();

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
