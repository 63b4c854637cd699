#include "common/manifest/trust.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/crypto/sha256.h"
#include "common/manifest/internal/canonical.h"
#include "common/manifest/manifest.h"
#include "common/manifest/verification.h"

namespace edgefleet::manifest {
namespace {

constexpr std::string_view kDelegationMagic = "EFD1";
constexpr std::string_view kTimestampMagic = "EFT1";
constexpr size_t kMaxRevokedKeys = 128;

enum DelegationTag : uint8_t {
  kKeyId = 1,
  kPublicKeyPem = 2,
  kDelegationExpiresAt = 3,
  kDelegationVersion = 4,
  kRevokedKeyIds = 5,
  kIssuedAt = 6,
  kRollbackFloorEpoch = 7,  // optional: written only when non-zero, so older encodings hold
};

enum TimestampTag : uint8_t {
  kDeviceId = 1,
  kTimestampIssuedAt = 2,
  kTimestampExpiresAt = 3,
  kDesiredSha256 = 4,
  kTimestampDelegationVersion = 5,
};

std::string Seconds(const google::protobuf::Timestamp& t) { return absl::StrCat(t.seconds()); }

Clock::TimePoint TimeOf(const google::protobuf::Timestamp& t) {
  return FromUnixSeconds(t.seconds());
}

absl::Status Expired(const std::string& what, const google::protobuf::Timestamp& expires_at) {
  return VerificationError(v1::FAILURE_REASON_EXPIRED,
                           absl::StrCat(what, " expired at unix time ", Seconds(expires_at)));
}

// Verifies `signature` over `bytes` with the key `keys` accepts for `key_id`.
absl::Status VerifyWithKeyring(const ReleaseKeyring& keys, std::string_view key_id,
                               std::string_view bytes, std::string_view signature,
                               Clock::TimePoint now, const std::string& what) {
  auto key = keys.KeyFor(key_id, now);
  if (!key.ok()) return key.status();
  if (absl::Status s = (*key)->Verify(bytes, signature); !s.ok()) {
    return VerificationError(v1::FAILURE_REASON_SIGNATURE,
                             absl::StrCat(what, " signature: ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace

std::string EncodeCanonical(const v1::ReleaseKeyDelegation& d) {
  internal::CanonicalWriter out(kDelegationMagic);
  out.Bytes(kKeyId, d.key_id());
  out.Bytes(kPublicKeyPem, d.public_key_pem());
  out.U64(kDelegationExpiresAt, static_cast<uint64_t>(d.expires_at().seconds()));
  out.U64(kDelegationVersion, d.delegation_version());
  // A list is one field holding length-prefixed entries, in sorted order.
  internal::CanonicalWriter revoked("");
  for (const std::string& id : d.revoked_key_ids()) revoked.Bytes(kRevokedKeyIds, id);
  out.Bytes(kRevokedKeyIds, revoked.Take());
  out.U64(kIssuedAt, static_cast<uint64_t>(d.issued_at().seconds()));
  if (d.rollback_floor_epoch() != 0) out.U64(kRollbackFloorEpoch, d.rollback_floor_epoch());
  return out.Take();
}

absl::StatusOr<v1::ReleaseKeyDelegation> DecodeCanonicalDelegation(std::string_view bytes) {
  internal::CanonicalReader in(bytes, "delegation");
  if (absl::Status s = in.Magic(kDelegationMagic); !s.ok()) return s;
  auto key_id = in.Bytes(kKeyId);
  if (!key_id.ok()) return key_id.status();
  auto pem = in.Bytes(kPublicKeyPem);
  if (!pem.ok()) return pem.status();
  auto expires = in.U64(kDelegationExpiresAt);
  if (!expires.ok()) return expires.status();
  auto version = in.U64(kDelegationVersion);
  if (!version.ok()) return version.status();
  auto revoked = in.Bytes(kRevokedKeyIds);
  if (!revoked.ok()) return revoked.status();
  auto issued = in.U64(kIssuedAt);
  if (!issued.ok()) return issued.status();
  uint64_t floor_epoch = 0;
  if (!in.AtEnd()) {
    auto epoch = in.U64(kRollbackFloorEpoch);
    if (!epoch.ok()) return epoch.status();
    if (*epoch == 0) return absl::InvalidArgumentError("delegation encodes a zero floor epoch");
    floor_epoch = *epoch;
  }
  if (absl::Status s = in.End(); !s.ok()) return s;

  v1::ReleaseKeyDelegation d;
  d.set_key_id(std::string(*key_id));
  d.set_public_key_pem(std::string(*pem));
  d.mutable_expires_at()->set_seconds(static_cast<int64_t>(*expires));
  d.set_delegation_version(*version);
  d.mutable_issued_at()->set_seconds(static_cast<int64_t>(*issued));
  d.set_rollback_floor_epoch(floor_epoch);
  internal::CanonicalReader list(*revoked, "delegation revoked key list");
  for (std::string_view rest = *revoked; !rest.empty();) {
    auto id = list.Bytes(kRevokedKeyIds);
    if (!id.ok()) return id.status();
    rest.remove_prefix(5 + id->size());
    if (d.revoked_key_ids_size() > 0 && d.revoked_key_ids().rbegin()->compare(*id) >= 0) {
      return absl::InvalidArgumentError("delegation revoked key ids are not sorted and unique");
    }
    if (static_cast<size_t>(d.revoked_key_ids_size()) >= kMaxRevokedKeys) {
      return absl::InvalidArgumentError("delegation revokes too many keys");
    }
    d.add_revoked_key_ids(std::string(*id));
  }
  if (d.key_id().empty()) return absl::InvalidArgumentError("delegation names no key");
  return d;
}

std::string EncodeCanonical(const v1::CheckInTimestamp& t) {
  internal::CanonicalWriter out(kTimestampMagic);
  out.Bytes(kDeviceId, t.device_id());
  out.U64(kTimestampIssuedAt, static_cast<uint64_t>(t.issued_at().seconds()));
  out.U64(kTimestampExpiresAt, static_cast<uint64_t>(t.expires_at().seconds()));
  out.Bytes(kDesiredSha256, t.desired_sha256());
  out.U64(kTimestampDelegationVersion, t.delegation_version());
  return out.Take();
}

absl::StatusOr<v1::CheckInTimestamp> DecodeCanonicalTimestamp(std::string_view bytes) {
  internal::CanonicalReader in(bytes, "timestamp");
  if (absl::Status s = in.Magic(kTimestampMagic); !s.ok()) return s;
  auto device_id = in.Bytes(kDeviceId);
  if (!device_id.ok()) return device_id.status();
  auto issued = in.U64(kTimestampIssuedAt);
  if (!issued.ok()) return issued.status();
  auto expires = in.U64(kTimestampExpiresAt);
  if (!expires.ok()) return expires.status();
  auto digest = in.Bytes(kDesiredSha256);
  if (!digest.ok()) return digest.status();
  auto version = in.U64(kTimestampDelegationVersion);
  if (!version.ok()) return version.status();
  if (absl::Status s = in.End(); !s.ok()) return s;
  if (digest->size() != 32) return absl::InvalidArgumentError("timestamp digest is not 32 bytes");
  v1::CheckInTimestamp t;
  t.set_device_id(std::string(*device_id));
  t.mutable_issued_at()->set_seconds(static_cast<int64_t>(*issued));
  t.mutable_expires_at()->set_seconds(static_cast<int64_t>(*expires));
  t.set_desired_sha256(std::string(*digest));
  t.set_delegation_version(*version);
  return t;
}

absl::StatusOr<v1::SignedDelegation> SignDelegation(const v1::ReleaseKeyDelegation& delegation,
                                                    const crypto::Signer& root) {
  v1::SignedDelegation out;
  out.set_canonical_delegation(EncodeCanonical(delegation));
  auto signature = root.Sign(out.canonical_delegation());
  if (!signature.ok()) return signature.status();
  out.set_signature(*std::move(signature));
  out.set_root_key_id(root.KeyId());
  return out;
}

absl::StatusOr<v1::SignedTimestamp> SignTimestamp(const v1::CheckInTimestamp& timestamp,
                                                  const crypto::Signer& release_key) {
  v1::SignedTimestamp out;
  out.set_canonical_timestamp(EncodeCanonical(timestamp));
  auto signature = release_key.Sign(out.canonical_timestamp());
  if (!signature.ok()) return signature.status();
  out.set_signature(*std::move(signature));
  out.set_key_id(release_key.KeyId());
  return out;
}

absl::StatusOr<v1::ReleaseKeyDelegation> VerifyDelegationSignature(
    const v1::SignedDelegation& signed_delegation, const crypto::Verifier& root) {
  if (signed_delegation.root_key_id() != root.KeyId()) {
    return VerificationError(
        v1::FAILURE_REASON_SIGNATURE,
        absl::StrCat("delegation is signed by key ", signed_delegation.root_key_id(),
                     ", not by the pinned root ", root.KeyId()));
  }
  if (absl::Status s =
          root.Verify(signed_delegation.canonical_delegation(), signed_delegation.signature());
      !s.ok()) {
    return VerificationError(v1::FAILURE_REASON_SIGNATURE,
                             absl::StrCat("delegation signature: ", s.message()));
  }
  auto delegation = DecodeCanonicalDelegation(signed_delegation.canonical_delegation());
  if (!delegation.ok()) {
    return VerificationError(v1::FAILURE_REASON_SIGNATURE,
                             std::string(delegation.status().message()));
  }
  return delegation;
}

absl::StatusOr<v1::ReleaseKeyDelegation> NextDelegation(
    const std::optional<v1::ReleaseKeyDelegation>& previous,
    std::string_view release_public_key_pem, Clock::TimePoint now, std::chrono::seconds validity,
    bool revoke_previous) {
  auto key = crypto::LoadEd25519Verifier(release_public_key_pem);
  if (!key.ok()) return key.status();
  if (validity.count() <= 0) return absl::InvalidArgumentError("delegation validity must be > 0");
  v1::ReleaseKeyDelegation d;
  d.set_key_id((*key)->KeyId());
  d.set_public_key_pem(std::string(release_public_key_pem));
  d.mutable_issued_at()->set_seconds(ToUnixSeconds(now));
  d.mutable_expires_at()->set_seconds(ToUnixSeconds(now + validity));
  std::set<std::string> revoked;
  d.set_delegation_version(1);
  if (previous.has_value()) {
    d.set_delegation_version(previous->delegation_version() + 1);
    d.set_rollback_floor_epoch(previous->rollback_floor_epoch());
    revoked.insert(previous->revoked_key_ids().begin(), previous->revoked_key_ids().end());
    if (revoke_previous && previous->key_id() != d.key_id()) revoked.insert(previous->key_id());
  }
  if (revoked.count(d.key_id()) > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("release key ", d.key_id(), " has been revoked; use a new key"));
  }
  for (const std::string& id : revoked) d.add_revoked_key_ids(id);
  return d;
}

std::string DesiredDigest(const google::protobuf::RepeatedPtrField<v1::DesiredModel>& desired) {
  internal::CanonicalWriter out("EFA1");
  for (const v1::DesiredModel& d : desired) {
    out.Bytes(1, d.manifest().canonical_manifest());
    out.Bytes(2, d.manifest().signature());
  }
  return crypto::Sha256Bytes(out.Take());
}

ReleaseKeyring::ReleaseKeyring(std::shared_ptr<const crypto::Verifier> root)
    : root_(std::move(root)) {}

absl::Status ReleaseKeyring::Adopt(const v1::SignedDelegation& signed_delegation,
                                   Clock::TimePoint now) {
  std::lock_guard lock(mu_);
  return AdoptLocked(signed_delegation, now);
}

absl::Status ReleaseKeyring::AdoptLocked(const v1::SignedDelegation& signed_delegation,
                                         std::optional<Clock::TimePoint> now) {
  if (signed_.has_value() &&
      signed_->canonical_delegation() == signed_delegation.canonical_delegation() &&
      signed_->signature() == signed_delegation.signature()) {
    return absl::OkStatus();
  }
  auto d = VerifyDelegationSignature(signed_delegation, *root_);
  if (!d.ok()) return d.status();
  const std::string what =
      absl::StrCat("delegation version ", d->delegation_version(), " of release key ", d->key_id());
  if (d->delegation_version() < highest_version_ ||
      (d->delegation_version() == highest_version_ && delegation_.has_value())) {
    return VerificationError(
        v1::FAILURE_REASON_ROLLBACK,
        absl::StrCat(what, " is not newer than version ", highest_version_, " already held"));
  }
  if (now.has_value() && TimeOf(d->expires_at()) <= *now) return Expired(what, d->expires_at());
  if (d->rollback_floor_epoch() < floor_epoch_) {
    return VerificationError(v1::FAILURE_REASON_ROLLBACK,
                             absl::StrCat(what, " lowers the rollback floor epoch to ",
                                          d->rollback_floor_epoch(), " from ", floor_epoch_));
  }
  std::set<std::string> revoked = revoked_;
  revoked.insert(d->revoked_key_ids().begin(), d->revoked_key_ids().end());
  if (revoked.count(d->key_id()) > 0) {
    return VerificationError(v1::FAILURE_REASON_SIGNATURE,
                             absl::StrCat(what, " delegates to a revoked key"));
  }
  auto key = crypto::LoadEd25519Verifier(d->public_key_pem());
  if (!key.ok() || (*key)->KeyId() != d->key_id()) {
    return VerificationError(v1::FAILURE_REASON_SIGNATURE,
                             absl::StrCat(what, ": public key does not match its key id"));
  }
  signed_ = signed_delegation;
  delegation_ = *std::move(d);
  delegated_ = *std::move(key);
  highest_version_ = delegation_->delegation_version();
  floor_epoch_ = delegation_->rollback_floor_epoch();
  revoked_ = std::move(revoked);
  return absl::OkStatus();
}

absl::Status ReleaseKeyring::Restore(const v1::ReleaseTrustState& state) {
  std::lock_guard lock(mu_);
  revoked_.insert(state.revoked_key_ids().begin(), state.revoked_key_ids().end());
  absl::Status adopted = absl::OkStatus();
  if (state.has_delegation()) {
    // Adopted below the persisted highest version, which is raised afterwards.
    adopted = AdoptLocked(state.delegation(), std::nullopt);
  }
  highest_version_ = std::max(highest_version_, state.highest_delegation_version());
  floor_epoch_ = std::max(floor_epoch_, state.rollback_floor_epoch());
  return adopted;
}

v1::ReleaseTrustState ReleaseKeyring::Snapshot() const {
  std::lock_guard lock(mu_);
  v1::ReleaseTrustState state;
  if (signed_.has_value()) *state.mutable_delegation() = *signed_;
  state.set_highest_delegation_version(highest_version_);
  state.set_rollback_floor_epoch(floor_epoch_);
  for (const std::string& id : revoked_) state.add_revoked_key_ids(id);
  return state;
}

absl::StatusOr<std::shared_ptr<const crypto::Verifier>> ReleaseKeyring::KeyFor(
    std::string_view key_view, Clock::TimePoint now) const {
  const std::string key_id(key_view);
  // The root may sign release metadata itself (devices enrolled before delegation pinned the
  // release key as their root); whoever holds the root can do anything anyway.
  if (key_id == root_->KeyId()) return root_;
  std::lock_guard lock(mu_);
  if (revoked_.count(key_id) > 0) {
    return VerificationError(
        v1::FAILURE_REASON_SIGNATURE,
        absl::StrCat("release key ", key_id, " has been revoked by the root (delegation version ",
                     highest_version_, ")"));
  }
  if (!delegation_.has_value()) {
    return VerificationError(
        v1::FAILURE_REASON_SIGNATURE,
        absl::StrCat("release key ", key_id, " is not delegated by the pinned root ",
                     root_->KeyId(), " (no delegation held)"));
  }
  if (delegation_->key_id() != key_id) {
    return VerificationError(
        v1::FAILURE_REASON_SIGNATURE,
        absl::StrCat("release key ", key_id, " is not the key the root delegated (",
                     delegation_->key_id(), ")"));
  }
  if (TimeOf(delegation_->expires_at()) <= now) {
    return Expired(absl::StrCat("delegation of release key ", key_id), delegation_->expires_at());
  }
  return delegated_;
}

std::optional<v1::ReleaseKeyDelegation> ReleaseKeyring::delegation() const {
  std::lock_guard lock(mu_);
  return delegation_;
}

uint64_t ReleaseKeyring::highest_version() const {
  std::lock_guard lock(mu_);
  return highest_version_;
}

uint64_t ReleaseKeyring::rollback_floor_epoch() const {
  std::lock_guard lock(mu_);
  return floor_epoch_;
}

absl::StatusOr<v1::ReleaseManifest> Verify(const v1::SignedManifest& signed_manifest,
                                           const ReleaseKeyring& keys, Clock::TimePoint now,
                                           uint64_t min_metadata_version) {
  auto key = keys.KeyFor(signed_manifest.key_id(), now);
  if (!key.ok()) {
    return VerificationError(FailureReasonOf(key.status(), v1::FAILURE_REASON_SIGNATURE),
                             absl::StrCat("manifest: ", key.status().message()));
  }
  return Verify(signed_manifest, **key, now, min_metadata_version);
}

absl::StatusOr<v1::CheckInTimestamp> VerifyTimestamp(const v1::SignedTimestamp& signed_timestamp,
                                                     const ReleaseKeyring& keys,
                                                     std::string_view device_id,
                                                     std::string_view desired_sha256,
                                                     Clock::TimePoint now,
                                                     std::optional<Clock::TimePoint> newest_seen) {
  if (signed_timestamp.canonical_timestamp().empty()) {
    return VerificationError(v1::FAILURE_REASON_SIGNATURE,
                             "check-in answer carries no signed timestamp");
  }
  if (absl::Status s =
          VerifyWithKeyring(keys, signed_timestamp.key_id(), signed_timestamp.canonical_timestamp(),
                            signed_timestamp.signature(), now, "timestamp");
      !s.ok()) {
    return VerificationError(FailureReasonOf(s, v1::FAILURE_REASON_SIGNATURE),
                             absl::StrCat("timestamp: ", s.message()));
  }
  auto t = DecodeCanonicalTimestamp(signed_timestamp.canonical_timestamp());
  if (!t.ok()) {
    return VerificationError(v1::FAILURE_REASON_SIGNATURE, std::string(t.status().message()));
  }
  if (t->device_id() != device_id) {
    return VerificationError(v1::FAILURE_REASON_SIGNATURE,
                             absl::StrCat("timestamp was made for device '", t->device_id(),
                                          "', not '", std::string(device_id), "'"));
  }
  if (t->desired_sha256() != desired_sha256) {
    return VerificationError(v1::FAILURE_REASON_SIGNATURE,
                             "timestamp does not match the answer's manifests");
  }
  if (TimeOf(t->expires_at()) <= now) return Expired("check-in timestamp", t->expires_at());
  if (newest_seen.has_value() && TimeOf(t->issued_at()) < *newest_seen) {
    return VerificationError(
        v1::FAILURE_REASON_ROLLBACK,
        absl::StrCat("check-in timestamp issued at unix time ", Seconds(t->issued_at()),
                     " is older than the newest already verified (", ToUnixSeconds(*newest_seen),
                     "): a replayed or frozen answer"));
  }
  return t;
}

}  // namespace edgefleet::manifest
