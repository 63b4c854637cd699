// TUF's key and freshness roles for edgefleet: the offline root's signed delegation of release
// signing to one online key (with expiry, a monotonic version and revocations), the keyring an
// agent builds from its pinned root and the delegations it has verified, and the signed timestamp
// that makes each check-in answer fresh. Server, agent and CLI share this file so they agree on
// the signed bytes exactly.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "common/crypto/signer.h"
#include "edgefleet/v1/device.pb.h"
#include "edgefleet/v1/manifest.pb.h"

namespace edgefleet::manifest {

// Canonical encodings (magic "EFD1" / "EFT1", then the fields in proto order, in the layout of
// EncodeCanonical(ReleaseManifest)). Revoked key ids must be sorted and unique; decoding refuses
// anything EncodeCanonical would not produce.
std::string EncodeCanonical(const v1::ReleaseKeyDelegation& delegation);
absl::StatusOr<v1::ReleaseKeyDelegation> DecodeCanonicalDelegation(std::string_view bytes);
std::string EncodeCanonical(const v1::CheckInTimestamp& timestamp);
absl::StatusOr<v1::CheckInTimestamp> DecodeCanonicalTimestamp(std::string_view bytes);

absl::StatusOr<v1::SignedDelegation> SignDelegation(const v1::ReleaseKeyDelegation& delegation,
                                                    const crypto::Signer& root);
absl::StatusOr<v1::SignedTimestamp> SignTimestamp(const v1::CheckInTimestamp& timestamp,
                                                  const crypto::Signer& release_key);

// The root's signature and the encoding only; SIGNATURE reason on failure. Whether the delegation
// is still in force (expiry, version, revocation) is the keyring's decision.
absl::StatusOr<v1::ReleaseKeyDelegation> VerifyDelegationSignature(
    const v1::SignedDelegation& signed_delegation, const crypto::Verifier& root);

// The delegation an operator issues for `release_public_key_pem`, valid from `now` for `validity`.
// With `previous` it follows it: version + 1, its revocations and rollback floor epoch kept;
// `revoke_previous` adds the previous key (a rotation). InvalidArgument for a bad key or when the
// new key is revoked.
absl::StatusOr<v1::ReleaseKeyDelegation> NextDelegation(
    const std::optional<v1::ReleaseKeyDelegation>& previous,
    std::string_view release_public_key_pem, Clock::TimePoint now, std::chrono::seconds validity,
    bool revoke_previous);

// SHA-256 binding a check-in answer's signed manifests (in order) to its timestamp, so an answer
// cannot be assembled from a fresh timestamp and other manifests (mix-and-match).
std::string DesiredDigest(const google::protobuf::RepeatedPtrField<v1::DesiredModel>& desired);

// The keys an agent accepts release metadata from: the pinned root itself, and the one release
// key the newest verified delegation names while it is in force. Safe to use from several threads.
class ReleaseKeyring {
 public:
  explicit ReleaseKeyring(std::shared_ptr<const crypto::Verifier> root);

  // Verifies `signed_delegation` against the root and makes it the one in force. Refused (and
  // nothing changes) when the signature fails (SIGNATURE), it is expired (EXPIRED), its version is
  // lower than the highest seen or equal with other content (ROLLBACK), or it delegates to a
  // revoked key (SIGNATURE). Adopting the delegation already held is OK and changes nothing.
  absl::Status Adopt(const v1::SignedDelegation& signed_delegation, Clock::TimePoint now);

  // Restores what an earlier run had verified: the highest version and revocations always, the
  // delegation when its signature still verifies (its expiry is checked at use).
  absl::Status Restore(const v1::ReleaseTrustState& state);
  // What Restore() takes back.
  v1::ReleaseTrustState Snapshot() const;

  // The verifier for `key_id` when it may sign release metadata at `now`, else a SIGNATURE error
  // that says why (revoked, not delegated) or EXPIRED (the delegation ran out).
  absl::StatusOr<std::shared_ptr<const crypto::Verifier>> KeyFor(std::string_view key_view,
                                                                 Clock::TimePoint now) const;

  std::string root_key_id() const { return root_->KeyId(); }
  // The delegation in force (if any) and the highest version seen.
  std::optional<v1::ReleaseKeyDelegation> delegation() const;
  uint64_t highest_version() const;
  // The highest rollback floor epoch adopted (see ReleaseKeyDelegation.rollback_floor_epoch).
  uint64_t rollback_floor_epoch() const;

 private:
  absl::Status AdoptLocked(const v1::SignedDelegation& signed_delegation,
                           std::optional<Clock::TimePoint> now);

  std::shared_ptr<const crypto::Verifier> root_;
  mutable std::mutex mu_;
  std::optional<v1::SignedDelegation> signed_;
  std::optional<v1::ReleaseKeyDelegation> delegation_;
  std::shared_ptr<const crypto::Verifier> delegated_;
  uint64_t highest_version_ = 0;
  uint64_t floor_epoch_ = 0;
  std::set<std::string> revoked_;
};

// Verifies a manifest signed by any key `keys` accepts at `now` (see Verify in manifest.h).
absl::StatusOr<v1::ReleaseManifest> Verify(const v1::SignedManifest& signed_manifest,
                                           const ReleaseKeyring& keys, Clock::TimePoint now,
                                           uint64_t min_metadata_version);

// Verifies a check-in answer's timestamp: signed by a key `keys` accepts, made for `device_id`,
// binding `desired_sha256`, not expired at `now` (EXPIRED) and not older than `newest_seen`
// (ROLLBACK: a replayed or frozen answer). Returns the timestamp to remember.
absl::StatusOr<v1::CheckInTimestamp> VerifyTimestamp(const v1::SignedTimestamp& signed_timestamp,
                                                     const ReleaseKeyring& keys,
                                                     std::string_view device_id,
                                                     std::string_view desired_sha256,
                                                     Clock::TimePoint now,
                                                     std::optional<Clock::TimePoint> newest_seen);

}  // namespace edgefleet::manifest
