#include "common/manifest/trust.h"

#include <gtest/gtest.h>

#include "common/crypto/sha256.h"
#include "common/manifest/manifest.h"
#include "common/manifest/verification.h"

namespace edgefleet::manifest {
namespace {

using std::chrono::hours;

struct Key {
  crypto::KeyPairPem pem;
  std::shared_ptr<const crypto::Signer> signer;
  std::shared_ptr<const crypto::Verifier> verifier;
};

Key NewKey() {
  auto pem = crypto::GenerateEd25519KeyPair();
  EXPECT_TRUE(pem.ok()) << pem.status();
  Key key{*pem, *crypto::LoadEd25519Signer(pem->private_key_pem),
          *crypto::LoadEd25519Verifier(pem->public_key_pem)};
  return key;
}

class TrustTest : public ::testing::Test {
 protected:
  // A delegation of `key` following `previous`, signed by the root.
  v1::SignedDelegation Delegate(const Key& key,
                                const std::optional<v1::ReleaseKeyDelegation>& previous,
                                bool revoke_previous = false, hours validity = hours(24 * 90)) {
    auto d =
        NextDelegation(previous, key.pem.public_key_pem, clock_.Now(), validity, revoke_previous);
    EXPECT_TRUE(d.ok()) << d.status();
    auto s = SignDelegation(*d, *root_.signer);
    EXPECT_TRUE(s.ok()) << s.status();
    return *s;
  }

  static v1::ReleaseKeyDelegation Decoded(const v1::SignedDelegation& s) {
    return *DecodeCanonicalDelegation(s.canonical_delegation());
  }

  v1::SignedManifest SignedSample(const Key& key, uint64_t metadata_version = 3) {
    v1::ReleaseManifest m;
    m.set_model_name("detector");
    m.set_version("7");
    m.set_artifact_sha256(crypto::Sha256Bytes("weights"));
    m.set_artifact_size_bytes(7);
    m.set_format(v1::MODEL_FORMAT_ONNX);
    m.set_metadata_version(metadata_version);
    m.mutable_expires_at()->set_seconds(ToUnixSeconds(clock_.Now()) + 3600);
    return *Sign(m, *key.signer);
  }

  v1::SignedTimestamp Stamp(const Key& key, const std::string& device, const std::string& digest,
                            hours ttl = hours(1)) {
    v1::CheckInTimestamp t;
    t.set_device_id(device);
    t.mutable_issued_at()->set_seconds(ToUnixSeconds(clock_.Now()));
    t.mutable_expires_at()->set_seconds(ToUnixSeconds(clock_.Now() + ttl));
    t.set_desired_sha256(digest);
    t.set_delegation_version(1);
    return *SignTimestamp(t, *key.signer);
  }

  FakeClock clock_;
  Key root_ = NewKey();
  Key release_a_ = NewKey();
  Key release_b_ = NewKey();
};

TEST_F(TrustTest, DelegationEncodingRoundTripsAndRefusesAnythingElse) {
  v1::SignedDelegation first = Delegate(release_a_, std::nullopt);
  v1::SignedDelegation second = Delegate(release_b_, Decoded(first), /*revoke_previous=*/true);
  const std::string bytes = second.canonical_delegation();
  EXPECT_EQ(bytes.substr(0, 4), "EFD1");
  auto d = DecodeCanonicalDelegation(bytes);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->delegation_version(), 2u);
  EXPECT_EQ(d->key_id(), release_b_.signer->KeyId());
  ASSERT_EQ(d->revoked_key_ids_size(), 1);
  EXPECT_EQ(d->revoked_key_ids(0), release_a_.signer->KeyId());
  EXPECT_EQ(EncodeCanonical(*d), bytes);
  for (size_t cut : {size_t{0}, size_t{3}, size_t{12}, bytes.size() - 1}) {
    EXPECT_FALSE(DecodeCanonicalDelegation(bytes.substr(0, cut)).ok()) << "cut at " << cut;
  }
  EXPECT_FALSE(DecodeCanonicalDelegation(bytes + "x").ok());
  // Revoked ids out of order are not canonical.
  v1::ReleaseKeyDelegation unsorted = *d;
  unsorted.add_revoked_key_ids("0000000000000000");
  EXPECT_FALSE(DecodeCanonicalDelegation(EncodeCanonical(unsorted)).ok());
}

TEST_F(TrustTest, RollbackFloorEpochIsSignedCarriedForwardAndNeverLowered) {
  v1::SignedDelegation first = Delegate(release_a_, std::nullopt);
  // Delegations without an epoch keep the encoding they had before epochs existed.
  EXPECT_EQ(first.canonical_delegation().size(), EncodeCanonical(Decoded(first)).size());
  v1::ReleaseKeyDelegation raised = Decoded(first);
  raised.set_delegation_version(2);
  raised.set_rollback_floor_epoch(1);
  const std::string bytes = EncodeCanonical(raised);
  EXPECT_GT(bytes.size(), first.canonical_delegation().size());
  EXPECT_EQ(DecodeCanonicalDelegation(bytes)->rollback_floor_epoch(), 1u);
  // The epoch is under the root's signature, and the next delegation carries it forward.
  v1::SignedDelegation signed_raised = *SignDelegation(raised, *root_.signer);
  v1::SignedDelegation forged = signed_raised;
  forged.mutable_canonical_delegation()->back() ^= 1;
  EXPECT_FALSE(VerifyDelegationSignature(forged, *root_.verifier).ok());
  v1::SignedDelegation next = Delegate(release_b_, raised, true);
  EXPECT_EQ(Decoded(next).rollback_floor_epoch(), 1u);

  ReleaseKeyring keys(root_.verifier);
  ASSERT_TRUE(keys.Adopt(first, clock_.Now()).ok());
  EXPECT_EQ(keys.rollback_floor_epoch(), 0u);
  ASSERT_TRUE(keys.Adopt(signed_raised, clock_.Now()).ok());
  EXPECT_EQ(keys.rollback_floor_epoch(), 1u);
  // A later delegation that lowers the epoch is refused; restoring keeps it.
  v1::ReleaseKeyDelegation lowered = Decoded(next);
  lowered.set_delegation_version(3);
  lowered.set_rollback_floor_epoch(0);
  EXPECT_EQ(FailureReasonOf(keys.Adopt(*SignDelegation(lowered, *root_.signer), clock_.Now())),
            v1::FAILURE_REASON_ROLLBACK);
  ReleaseKeyring restored(root_.verifier);
  ASSERT_TRUE(restored.Restore(keys.Snapshot()).ok());
  EXPECT_EQ(restored.rollback_floor_epoch(), 1u);
}

TEST_F(TrustTest, TimestampEncodingRoundTrips) {
  v1::SignedTimestamp s = Stamp(release_a_, "dev-1", crypto::Sha256Bytes("x"));
  auto t = DecodeCanonicalTimestamp(s.canonical_timestamp());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->device_id(), "dev-1");
  EXPECT_EQ(EncodeCanonical(*t), s.canonical_timestamp());
  EXPECT_FALSE(DecodeCanonicalTimestamp(s.canonical_timestamp() + "x").ok());
  EXPECT_FALSE(DecodeCanonicalTimestamp(SignedSample(release_a_).canonical_manifest()).ok());
}

TEST_F(TrustTest, ManifestSignedByTheDelegatedKeyVerifies) {
  ReleaseKeyring keys(root_.verifier);
  // Before any delegation only the root itself is trusted.
  auto refused = Verify(SignedSample(release_a_), keys, clock_.Now(), 0);
  EXPECT_EQ(FailureReasonOf(refused.status()), v1::FAILURE_REASON_SIGNATURE);
  EXPECT_NE(refused.status().message().find("not delegated"), std::string::npos)
      << refused.status();
  EXPECT_TRUE(Verify(SignedSample(root_), keys, clock_.Now(), 0).ok());

  ASSERT_TRUE(keys.Adopt(Delegate(release_a_, std::nullopt), clock_.Now()).ok());
  auto manifest = Verify(SignedSample(release_a_), keys, clock_.Now(), 0);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->model_name(), "detector");
  // Another key, even a valid Ed25519 one, is not delegated.
  EXPECT_EQ(FailureReasonOf(Verify(SignedSample(release_b_), keys, clock_.Now(), 0).status()),
            v1::FAILURE_REASON_SIGNATURE);
  // The manifest's own checks still apply.
  EXPECT_EQ(FailureReasonOf(Verify(SignedSample(release_a_, 3), keys, clock_.Now(), 4).status()),
            v1::FAILURE_REASON_ROLLBACK);
}

TEST_F(TrustTest, RotationRevokesTheOldKeyWithAClearReason) {
  ReleaseKeyring keys(root_.verifier);
  v1::SignedDelegation first = Delegate(release_a_, std::nullopt);
  ASSERT_TRUE(keys.Adopt(first, clock_.Now()).ok());
  v1::SignedManifest old_signed = SignedSample(release_a_);
  ASSERT_TRUE(keys.Adopt(Delegate(release_b_, Decoded(first), true), clock_.Now()).ok());
  EXPECT_EQ(keys.highest_version(), 2u);

  EXPECT_TRUE(Verify(SignedSample(release_b_), keys, clock_.Now(), 0).ok());
  auto refused = Verify(old_signed, keys, clock_.Now(), 0);
  EXPECT_EQ(FailureReasonOf(refused.status()), v1::FAILURE_REASON_SIGNATURE);
  EXPECT_NE(refused.status().message().find("revoked"), std::string::npos) << refused.status();
  EXPECT_NE(refused.status().message().find(release_a_.signer->KeyId()), std::string::npos);

  // The old delegation, replayed by whoever holds the old key, does not bring it back.
  absl::Status replay = keys.Adopt(first, clock_.Now());
  EXPECT_EQ(FailureReasonOf(replay), v1::FAILURE_REASON_ROLLBACK) << replay;
  EXPECT_FALSE(Verify(old_signed, keys, clock_.Now(), 0).ok());
}

TEST_F(TrustTest, DelegationsThatAreForgedExpiredOrToARevokedKeyAreRefused) {
  ReleaseKeyring keys(root_.verifier);
  // Signed by a key that is not the pinned root.
  auto forged =
      NextDelegation(std::nullopt, release_a_.pem.public_key_pem, clock_.Now(), hours(24), false);
  ASSERT_TRUE(forged.ok());
  absl::Status s = keys.Adopt(*SignDelegation(*forged, *release_b_.signer), clock_.Now());
  EXPECT_EQ(FailureReasonOf(s), v1::FAILURE_REASON_SIGNATURE) << s;
  // Tampered bytes.
  v1::SignedDelegation tampered = Delegate(release_a_, std::nullopt);
  tampered.mutable_canonical_delegation()->back() ^= 1;
  EXPECT_EQ(FailureReasonOf(keys.Adopt(tampered, clock_.Now())), v1::FAILURE_REASON_SIGNATURE);
  // Expired.
  v1::SignedDelegation short_lived = Delegate(release_a_, std::nullopt, false, hours(1));
  clock_.Advance(hours(2));
  EXPECT_EQ(FailureReasonOf(keys.Adopt(short_lived, clock_.Now())), v1::FAILURE_REASON_EXPIRED);

  // A delegation that expires while in force stops its key, with the expiry named.
  v1::SignedDelegation current = Delegate(release_a_, std::nullopt, false, hours(1));
  ASSERT_TRUE(keys.Adopt(current, clock_.Now()).ok());
  v1::SignedManifest signed_manifest = SignedSample(release_a_);
  clock_.Advance(hours(2));
  auto expired = Verify(signed_manifest, keys, clock_.Now(), 0);
  EXPECT_EQ(FailureReasonOf(expired.status()), v1::FAILURE_REASON_EXPIRED) << expired.status();

  // A root that delegates again to a key it revoked is refused by the agent as well.
  v1::ReleaseKeyDelegation back = Decoded(current);
  back.set_delegation_version(5);
  back.add_revoked_key_ids(release_a_.signer->KeyId());
  back.mutable_expires_at()->set_seconds(ToUnixSeconds(clock_.Now() + hours(24)));
  EXPECT_EQ(FailureReasonOf(keys.Adopt(*SignDelegation(back, *root_.signer), clock_.Now())),
            v1::FAILURE_REASON_SIGNATURE);
  EXPECT_FALSE(
      NextDelegation(back, release_a_.pem.public_key_pem, clock_.Now(), hours(1), false).ok());
}

TEST_F(TrustTest, SnapshotAndRestoreKeepTheHighestVersionAndRevocations) {
  ReleaseKeyring keys(root_.verifier);
  v1::SignedDelegation first = Delegate(release_a_, std::nullopt);
  ASSERT_TRUE(keys.Adopt(first, clock_.Now()).ok());
  ASSERT_TRUE(keys.Adopt(Delegate(release_b_, Decoded(first), true), clock_.Now()).ok());
  v1::ReleaseTrustState state = keys.Snapshot();

  ReleaseKeyring restored(root_.verifier);
  ASSERT_TRUE(restored.Restore(state).ok());
  EXPECT_EQ(restored.highest_version(), 2u);
  EXPECT_TRUE(Verify(SignedSample(release_b_), restored, clock_.Now(), 0).ok());
  EXPECT_FALSE(Verify(SignedSample(release_a_), restored, clock_.Now(), 0).ok());
  EXPECT_EQ(FailureReasonOf(restored.Adopt(first, clock_.Now())), v1::FAILURE_REASON_ROLLBACK);

  // A persisted delegation that no longer verifies is not trusted, and the version floor stays.
  v1::ReleaseTrustState damaged = state;
  damaged.mutable_delegation()->mutable_signature()->front() ^= 1;
  ReleaseKeyring wary(root_.verifier);
  EXPECT_FALSE(wary.Restore(damaged).ok());
  EXPECT_EQ(wary.highest_version(), 2u);
  EXPECT_FALSE(Verify(SignedSample(release_b_), wary, clock_.Now(), 0).ok());
}

TEST_F(TrustTest, TimestampsMustBeFreshNewerBoundAndForThisDevice) {
  ReleaseKeyring keys(root_.verifier);
  ASSERT_TRUE(keys.Adopt(Delegate(release_a_, std::nullopt), clock_.Now()).ok());
  const std::string digest = crypto::Sha256Bytes("answer");
  v1::SignedTimestamp first = Stamp(release_a_, "dev-1", digest);
  auto ok = VerifyTimestamp(first, keys, "dev-1", digest, clock_.Now(), std::nullopt);
  ASSERT_TRUE(ok.ok()) << ok.status();
  const Clock::TimePoint newest = FromUnixSeconds(ok->issued_at().seconds());

  EXPECT_EQ(FailureReasonOf(
                VerifyTimestamp(first, keys, "dev-2", digest, clock_.Now(), std::nullopt).status()),
            v1::FAILURE_REASON_SIGNATURE);
  EXPECT_EQ(FailureReasonOf(VerifyTimestamp(first, keys, "dev-1", crypto::Sha256Bytes("other"),
                                            clock_.Now(), std::nullopt)
                                .status()),
            v1::FAILURE_REASON_SIGNATURE);
  EXPECT_EQ(FailureReasonOf(VerifyTimestamp(Stamp(release_b_, "dev-1", digest), keys, "dev-1",
                                            digest, clock_.Now(), std::nullopt)
                                .status()),
            v1::FAILURE_REASON_SIGNATURE);
  EXPECT_EQ(FailureReasonOf(VerifyTimestamp(v1::SignedTimestamp(), keys, "dev-1", digest,
                                            clock_.Now(), std::nullopt)
                                .status()),
            v1::FAILURE_REASON_SIGNATURE);

  // A newer one is accepted; then the first one, replayed, is older than the newest seen.
  clock_.Advance(std::chrono::minutes(5));
  v1::SignedTimestamp second = Stamp(release_a_, "dev-1", digest);
  auto newer = VerifyTimestamp(second, keys, "dev-1", digest, clock_.Now(), newest);
  ASSERT_TRUE(newer.ok()) << newer.status();
  auto replayed = VerifyTimestamp(first, keys, "dev-1", digest, clock_.Now(),
                                  FromUnixSeconds(newer->issued_at().seconds()));
  EXPECT_EQ(FailureReasonOf(replayed.status()), v1::FAILURE_REASON_ROLLBACK) << replayed.status();

  // Past its expiry it is stale.
  clock_.Advance(hours(2));
  EXPECT_EQ(
      FailureReasonOf(
          VerifyTimestamp(second, keys, "dev-1", digest, clock_.Now(), std::nullopt).status()),
      v1::FAILURE_REASON_EXPIRED);
}

TEST_F(TrustTest, DesiredDigestCoversEveryManifestAndItsOrder) {
  v1::CheckInResponse a;
  *a.add_desired()->mutable_manifest() = SignedSample(release_a_, 1);
  *a.add_desired()->mutable_manifest() = SignedSample(release_a_, 2);
  v1::CheckInResponse swapped;
  *swapped.add_desired() = a.desired(1);
  *swapped.add_desired() = a.desired(0);
  v1::CheckInResponse fewer;
  *fewer.add_desired() = a.desired(0);
  EXPECT_EQ(DesiredDigest(a.desired()), DesiredDigest(a.desired()));
  EXPECT_NE(DesiredDigest(a.desired()), DesiredDigest(swapped.desired()));
  EXPECT_NE(DesiredDigest(a.desired()), DesiredDigest(fewer.desired()));
  EXPECT_NE(DesiredDigest(fewer.desired()), DesiredDigest(v1::CheckInResponse().desired()));
}

}  // namespace
}  // namespace edgefleet::manifest
