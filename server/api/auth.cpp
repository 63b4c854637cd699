#include "server/api/auth.h"

#include "absl/strings/str_cat.h"
#include "common/crypto/sha256.h"

namespace edgefleet::server {

absl::StatusOr<Principal> Authenticator::Authenticate(std::string_view authorization) const {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.substr(0, kBearer.size()) != kBearer ||
      authorization.size() == kBearer.size()) {
    return absl::UnauthenticatedError("missing bearer token (Authorization: Bearer <token>)");
  }
  auto record = tokens_.FindByHash(crypto::Sha256Bytes(authorization.substr(kBearer.size())));
  if (absl::IsNotFound(record.status())) return absl::UnauthenticatedError("unknown API token");
  if (!record.ok()) return record.status();
  return Principal{record->name, record->role};
}

absl::Status Authenticator::Authorize(const Principal& principal, bool mutating) {
  if (!mutating || principal.role == "admin" || principal.role == "release-manager") {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat("token '", principal.name, "' has role ", principal.role, " and may only read"));
}

}  // namespace edgefleet::server
