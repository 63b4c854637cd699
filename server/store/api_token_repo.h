// ApiTokenRepo stores operator API tokens (hashed) with their roles, expiry and revocation.
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

class ApiTokenRepo {
 public:
  explicit ApiTokenRepo(Database& db) : db_(db) {}

  // Creates or replaces the token called `name`, clearing any expiry or revocation (the
  // server's configured admin token). InvalidArgument for an unknown role; AlreadyExists when
  // another name already has this hash.
  absl::Status Upsert(const std::string& name, const std::string& role,
                      const std::string& token_hash);
  // Creates a new token (`record`'s created_at and revoked_at are ignored). AlreadyExists for a
  // taken name or hash; InvalidArgument for an unknown role.
  absl::StatusOr<ApiTokenRecord> Insert(const ApiTokenRecord& record,
                                        const std::string& token_hash);
  // The token with this hash, revoked or expired ones included. NotFound "unknown API token".
  absl::StatusOr<ApiTokenRecord> FindByHash(const std::string& token_hash);
  // A page of tokens, by name, after `page.after` (a name).
  absl::StatusOr<Page<ApiTokenRecord>> ListPage(const PageRequest& page);
  // Marks the token revoked at `now_unix` (kept as it was when already revoked). NotFound.
  absl::StatusOr<ApiTokenRecord> Revoke(const std::string& name, int64_t now_unix);
  // Whether any token exists (the server bootstraps an admin token when none does).
  absl::StatusOr<bool> Any();

 private:
  Database& db_;
};

}  // namespace edgefleet::server
