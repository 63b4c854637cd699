// EnrollmentTokenStore stores hashed device enrollment tokens and consumes their uses atomically.
// EnrollmentTokenRepo is its PostgreSQL implementation; its mutating methods run in the
// caller's Tx.
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

class EnrollmentTokenStore {
 public:
  virtual ~EnrollmentTokenStore() = default;

  // Returns the stored token without its secret (`token` is empty). InvalidArgument when
  // max_uses < 1; AlreadyExists for a duplicate id or hash.
  virtual absl::StatusOr<v1::EnrollmentToken> Create(Tx& tx, const std::string& token_id,
                                                     const std::string& token_hash, int max_uses,
                                                     int64_t expires_at_unix, const Labels& labels,
                                                     const std::string& description) = 0;
  // A page of tokens without their secrets, by id, after `page.after` (an id).
  virtual absl::StatusOr<Page<v1::EnrollmentToken>> ListPage(const PageRequest& page) = 0;
  // Marks the token revoked at `now_unix` (kept as it was when already revoked); it cannot
  // enroll from then on. NotFound.
  virtual absl::StatusOr<v1::EnrollmentToken> Revoke(Tx& tx, const std::string& token_id,
                                                     int64_t now_unix) = 0;
  // Uses the token once and returns the labels it grants. One atomic UPDATE, so concurrent
  // callers can never exceed max_uses. Errors: Unauthenticated "unknown enrollment token",
  // PermissionDenied "enrollment token revoked" or "enrollment token expired",
  // ResourceExhausted "enrollment token has no uses left".
  virtual absl::StatusOr<Labels> Consume(Tx& tx, const std::string& token_hash,
                                         int64_t now_unix) = 0;
};

// The PostgreSQL EnrollmentTokenStore.
class EnrollmentTokenRepo final : public EnrollmentTokenStore {
 public:
  explicit EnrollmentTokenRepo(Database& db) : db_(db) {}
  absl::StatusOr<v1::EnrollmentToken> Create(Tx& tx, const std::string& token_id,
                                             const std::string& token_hash, int max_uses,
                                             int64_t expires_at_unix, const Labels& labels,
                                             const std::string& description) override;
  absl::StatusOr<Page<v1::EnrollmentToken>> ListPage(const PageRequest& page) override;
  absl::StatusOr<v1::EnrollmentToken> Revoke(Tx& tx, const std::string& token_id,
                                             int64_t now_unix) override;
  absl::StatusOr<Labels> Consume(Tx& tx, const std::string& token_hash, int64_t now_unix) override;

 private:
  Database& db_;
};

}  // namespace edgefleet::server
