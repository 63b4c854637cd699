// The chain devices trust for releases, as the server holds it: the root public key devices pin at
// enrollment and the root's delegation of the server's online release key, both under
// <data_dir>/keys. The root's private key belongs offline with the operator (`edgefleetctl keys`);
// only when none was configured does the server make and hold one itself (demo mode, logged at
// warn).
#pragma once

#include <chrono>
#include <string>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "edgefleet/v1/manifest.pb.h"

namespace edgefleet::server {

struct ServerReleaseTrust {
  std::string root_public_key_pem;
  v1::SignedDelegation delegation;
  v1::ReleaseKeyDelegation decoded;  // what `delegation` says
  bool root_online = false;          // the root's private key is on this host (demo mode)
};

// How long a delegation the server issues itself (demo mode) lasts, and when it reissues it.
inline constexpr std::chrono::hours kOnlineDelegationValidity{24 * 90};
inline constexpr std::chrono::hours kDelegationRenewBefore{24 * 30};

// Reads <keys_dir>/root.pub and <keys_dir>/delegation.bin (a serialized SignedDelegation).
// - root.pub without root.key (offline root): the delegation must verify against root.pub, name
//   the release key `release_public_key_pem` and be unexpired; otherwise FailedPrecondition
//   saying what to run.
// - root.key present, or no root at all (created then): the root is online; the server issues
//   (and at start renews) the delegation itself, revoking a previous release key it replaces.
absl::StatusOr<ServerReleaseTrust> LoadOrCreateReleaseTrust(
    const std::string& keys_dir, const std::string& release_public_key_pem, Clock::TimePoint now);

}  // namespace edgefleet::server
