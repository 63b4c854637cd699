// ApiTokenStore stores operator API tokens (hashed) with their roles, expiry and revocation.
// ApiTokenRepo is its PostgreSQL implementation; its mutating methods run in the caller's Tx.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/store/database.h"
#include "server/store/paging.h"

namespace edgefleet::server {

struct ApiTokenRecord {
  std::string name;
  std::string role;  // "admin", "release-manager", "operator" or "viewer"
  int64_t created_at_unix = 0;
  std::optional<int64_t> expires_at_unix;  // none: never expires
  std::optional<int64_t> revoked_at_unix;  // none: not revoked
  std::string created_by;
  std::string description;
};

class ApiTokenStore {
 public:
  virtual ~ApiTokenStore() = default;

  // Creates or replaces the token called `name`, clearing any expiry or revocation (the
  // server's configured admin token). InvalidArgument for an unknown role; AlreadyExists when
  // another name already has this hash.
  virtual absl::Status Upsert(Tx& tx, const std::string& name, const std::string& role,
                              const std::string& token_hash) = 0;
  // Creates a new token (`record`'s created_at and revoked_at are ignored). AlreadyExists for a
  // taken name or hash; InvalidArgument for an unknown role.
  virtual absl::StatusOr<ApiTokenRecord> Insert(Tx& tx, const ApiTokenRecord& record,
                                                const std::string& token_hash) = 0;
  // The token with this hash, revoked or expired ones included. NotFound "unknown API token".
  virtual absl::StatusOr<ApiTokenRecord> FindByHash(const std::string& token_hash) = 0;
  // A page of tokens, by name, after `page.after` (a name).
  virtual absl::StatusOr<Page<ApiTokenRecord>> ListPage(const PageRequest& page) = 0;
  // Marks the token revoked at `now_unix` (kept as it was when already revoked). NotFound.
  virtual absl::StatusOr<ApiTokenRecord> Revoke(Tx& tx, const std::string& name,
                                                int64_t now_unix) = 0;
  // Whether any token exists (the server bootstraps an admin token when none does).
  virtual absl::StatusOr<bool> Any() = 0;
};

// The PostgreSQL ApiTokenStore.
class ApiTokenRepo final : public ApiTokenStore {
 public:
  explicit ApiTokenRepo(Database& db) : db_(db) {}
  absl::Status Upsert(Tx& tx, const std::string& name, const std::string& role,
                      const std::string& token_hash) override;
  absl::StatusOr<ApiTokenRecord> Insert(Tx& tx, const ApiTokenRecord& record,
                                        const std::string& token_hash) override;
  absl::StatusOr<ApiTokenRecord> FindByHash(const std::string& token_hash) override;
  absl::StatusOr<Page<ApiTokenRecord>> ListPage(const PageRequest& page) override;
  absl::StatusOr<ApiTokenRecord> Revoke(Tx& tx, const std::string& name, int64_t now_unix) override;
  absl::StatusOr<bool> Any() override;

 private:
  Database& db_;
};

}  // namespace edgefleet::server
