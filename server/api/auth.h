// Operator authentication: bearer API tokens, stored hashed, each with a role.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/store/api_token_repo.h"

namespace edgefleet::server {

struct Principal {
  std::string name;
  std::string role;  // admin, release-manager, viewer
};

class Authenticator {
 public:
  explicit Authenticator(ApiTokenRepo& tokens) : tokens_(tokens) {}

  // `authorization` is the header value ("Bearer <token>"). Unauthenticated when missing or
  // unknown.
  absl::StatusOr<Principal> Authenticate(std::string_view authorization) const;

  // PermissionDenied unless the principal may perform a mutating call (`mutating`) or a read.
  static absl::Status Authorize(const Principal& principal, bool mutating);

 private:
  ApiTokenRepo& tokens_;
};

}  // namespace edgefleet::server
