// EnrollmentTokenRepo stores hashed device enrollment tokens and consumes their uses atomically.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/core/labels.h"
#include "edgefleet/v1/admin.pb.h"
#include "server/store/database.h"
#include "server/store/paging.h"

namespace edgefleet::server {

class EnrollmentTokenRepo {
 public:
  explicit EnrollmentTokenRepo(Database& db) : db_(db) {}

  // Returns the stored token without its secret (`token` is empty). InvalidArgument when
  // max_uses < 1; AlreadyExists for a duplicate id or hash.
  absl::StatusOr<v1::EnrollmentToken> Create(const std::string& token_id,
                                             const std::string& token_hash, int max_uses,
                                             int64_t expires_at_unix, const Labels& labels,
                                             const std::string& description);

  // A page of tokens without their secrets, by id, after `page.after` (an id).
  absl::StatusOr<Page<v1::EnrollmentToken>> ListPage(const PageRequest& page);
  // Marks the token revoked at `now_unix` (kept as it was when already revoked); it cannot
  // enroll from then on. NotFound.
  absl::StatusOr<v1::EnrollmentToken> Revoke(const std::string& token_id, int64_t now_unix);

  // Uses the token once and returns the labels it grants. One atomic UPDATE, so concurrent
  // callers can never exceed max_uses. Errors: Unauthenticated "unknown enrollment token",
  // PermissionDenied "enrollment token revoked" or "enrollment token expired",
  // ResourceExhausted "enrollment token has no uses left".
  absl::StatusOr<Labels> Consume(const std::string& token_hash, int64_t now_unix);

 private:
  Database& db_;
};

}  // namespace edgefleet::server
