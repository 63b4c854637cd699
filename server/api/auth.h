// Operator authentication and authorization: bearer API tokens, stored hashed, each with a role;
// every admin call needs one permission ("verb:resource") and roles map to permission sets here.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "edgefleet/v1/admin.pb.h"
#include "server/store/api_token_repo.h"

namespace edgefleet::server {

// "verb:resource", e.g. "read:devices". The admin call table (admin_calls.h) names one per call.
using Permission = std::string_view;

namespace permission {
inline constexpr Permission kReadDevices = "read:devices";
inline constexpr Permission kWriteDevices = "write:devices";
// Lets a device id enroll again with a new key: an identity decision, so admins only.
inline constexpr Permission kRekeyDevices = "rekey:devices";
inline constexpr Permission kReadModels = "read:models";
inline constexpr Permission kPushModels = "push:models";
// Settings of a model beyond its versions (drift thresholds).
inline constexpr Permission kConfigureModels = "configure:models";
inline constexpr Permission kReadDeployments = "read:deployments";
inline constexpr Permission kCreateDeployments = "create:deployments";
inline constexpr Permission kCreateEnrollmentTokens = "create:enrollment-tokens";
inline constexpr Permission kReadEnrollmentTokens = "read:enrollment-tokens";
inline constexpr Permission kRevokeEnrollmentTokens = "revoke:enrollment-tokens";
inline constexpr Permission kCreateApiTokens = "create:api-tokens";
inline constexpr Permission kReadApiTokens = "read:api-tokens";
inline constexpr Permission kRevokeApiTokens = "revoke:api-tokens";
inline constexpr Permission kReadRollouts = "read:rollouts";
inline constexpr Permission kCreateRollouts = "create:rollouts";
// Pause, resume, promote, abort and roll back a rollout.
inline constexpr Permission kActRollouts = "act:rollouts";
}  // namespace permission

struct Principal {
  std::string name;
  v1::Role role = v1::ROLE_UNSPECIFIED;
};

// The permissions a role grants (empty for ROLE_UNSPECIFIED). The one place roles are defined:
// viewer reads the fleet, operator adds device actions, deployments and rollouts (creating and
// acting on them), release-manager adds pushing models, admin has every permission (tokens
// included).
const std::vector<Permission>& PermissionsOf(v1::Role role);
bool RoleAllows(v1::Role role, Permission permission);

// The stored (and command-line) name of a role: "viewer", "operator", "release-manager",
// "admin"; InvalidArgument for anything else.
std::string_view RoleName(v1::Role role);
absl::StatusOr<v1::Role> ParseRoleName(std::string_view name);

class Authenticator {
 public:
  Authenticator(ApiTokenStore& tokens, const Clock& clock) : tokens_(tokens), clock_(clock) {}

  // `authorization` is the header value ("Bearer <token>"). Unauthenticated when missing,
  // unknown, revoked or expired (the message says which).
  absl::StatusOr<Principal> Authenticate(std::string_view authorization) const;

  // PermissionDenied unless the principal's role grants `permission`.
  static absl::Status Authorize(const Principal& principal, Permission permission);

 private:
  ApiTokenStore& tokens_;
  const Clock& clock_;
};

}  // namespace edgefleet::server
