#include "server/api/auth.h"

#include <algorithm>
#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/crypto/sha256.h"

namespace edgefleet::server {
namespace {

using namespace permission;

constexpr std::array<std::pair<v1::Role, std::string_view>, 4> kRoleNames = {{
    {v1::ROLE_VIEWER, "viewer"},
    {v1::ROLE_OPERATOR, "operator"},
    {v1::ROLE_RELEASE_MANAGER, "release-manager"},
    {v1::ROLE_ADMIN, "admin"},
}};

// Each role is the one before it plus what it adds.
std::vector<Permission> Grants(std::vector<Permission> base, std::vector<Permission> added) {
  base.insert(base.end(), added.begin(), added.end());
  return base;
}

}  // namespace

const std::vector<Permission>& PermissionsOf(v1::Role role) {
  static const auto* kViewer =
      new std::vector<Permission>{kReadDevices, kReadModels, kReadDeployments, kReadRollouts};
  static const auto* kOperator = new std::vector<Permission>(
      Grants(*kViewer, {kWriteDevices, kCreateDeployments, kCreateRollouts, kActRollouts}));
  static const auto* kReleaseManager =
      new std::vector<Permission>(Grants(*kOperator, {kPushModels, kConfigureModels}));
  static const auto* kAdmin = new std::vector<Permission>(
      Grants(*kReleaseManager,
             {kRekeyDevices, kCreateEnrollmentTokens, kReadEnrollmentTokens,
              kRevokeEnrollmentTokens, kCreateApiTokens, kReadApiTokens, kRevokeApiTokens}));
  static const auto* kNone = new std::vector<Permission>();
  switch (role) {
    case v1::ROLE_VIEWER:
      return *kViewer;
    case v1::ROLE_OPERATOR:
      return *kOperator;
    case v1::ROLE_RELEASE_MANAGER:
      return *kReleaseManager;
    case v1::ROLE_ADMIN:
      return *kAdmin;
    default:
      return *kNone;
  }
}

bool RoleAllows(v1::Role role, Permission permission) {
  const std::vector<Permission>& granted = PermissionsOf(role);
  return std::find(granted.begin(), granted.end(), permission) != granted.end();
}

std::string_view RoleName(v1::Role role) {
  for (const auto& [r, name] : kRoleNames) {
    if (r == role) return name;
  }
  return "unspecified";
}

absl::StatusOr<v1::Role> ParseRoleName(std::string_view name) {
  for (const auto& [role, n] : kRoleNames) {
    if (n == name) return role;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown role '", std::string(name), "' (want viewer, operator, release-manager or admin)"));
}

absl::StatusOr<Principal> Authenticator::Authenticate(std::string_view authorization) const {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.substr(0, kBearer.size()) != kBearer ||
      authorization.size() == kBearer.size()) {
    return absl::UnauthenticatedError("missing bearer token (Authorization: Bearer <token>)");
  }
  auto record = tokens_.FindByHash(crypto::Sha256Bytes(authorization.substr(kBearer.size())));
  if (absl::IsNotFound(record.status())) return absl::UnauthenticatedError("unknown API token");
  if (!record.ok()) return record.status();
  if (record->revoked_at_unix.has_value()) {
    return absl::UnauthenticatedError(absl::StrCat("API token '", record->name, "' was revoked at ",
                                                   FormatUnixTime(*record->revoked_at_unix)));
  }
  if (record->expires_at_unix.has_value() &&
      *record->expires_at_unix <= ToUnixSeconds(clock_.Now())) {
    return absl::UnauthenticatedError(absl::StrCat("API token '", record->name, "' expired at ",
                                                   FormatUnixTime(*record->expires_at_unix)));
  }
  auto role = ParseRoleName(record->role);
  if (!role.ok()) {
    return absl::InternalError(absl::StrCat(
        "API token '", record->name, "' has an unknown stored role: ", role.status().message()));
  }
  return Principal{record->name, *role};
}

absl::Status Authenticator::Authorize(const Principal& principal, Permission permission) {
  if (RoleAllows(principal.role, permission)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat("token '", principal.name, "' has role ",
                                                  std::string(RoleName(principal.role)),
                                                  " which lacks ", std::string(permission)));
}

}  // namespace edgefleet::server
