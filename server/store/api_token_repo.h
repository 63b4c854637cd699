// ApiTokenRepo stores operator API tokens (hashed) and their roles.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/store/database.h"

namespace edgefleet::server {

struct ApiTokenRecord {
  std::string name;
  std::string role;  // "admin", "release-manager" or "viewer"
};

class ApiTokenRepo {
 public:
  explicit ApiTokenRepo(Database& db) : db_(db) {}

  // Creates or replaces the token called `name`. InvalidArgument for an unknown role;
  // AlreadyExists when another name already has this hash.
  absl::Status Upsert(const std::string& name, const std::string& role,
                      const std::string& token_hash);
  // NotFound "unknown API token".
  absl::StatusOr<ApiTokenRecord> FindByHash(const std::string& token_hash);
  // Whether any token exists (the server bootstraps an admin token when none does).
  absl::StatusOr<bool> Any();

 private:
  Database& db_;
};

}  // namespace edgefleet::server
