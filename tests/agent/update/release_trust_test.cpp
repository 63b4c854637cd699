// The agent's side of key delegation and freshness: an updater following a release key rotation
// and refusing the revoked key, and ReleaseTrust deciding which check-in answers to act on, kept
// across restarts, with the freeze alarm on a fake clock.
#include "agent/update/release_trust.h"

#include <gtest/gtest.h>

#include <chrono>
#include <optional>

#include "agent/engine/opencv_engine.h"
#include "agent/update/updater.h"
#include "common/manifest/verification.h"
#include "tests/fakes/fake_device_transport.h"
#include "tests/fakes/scratch_dir.h"
#include "tests/fakes/test_release.h"

namespace edgefleet::agent {
namespace {

using fakes::ReadFileBytes;
using fakes::TestDataPath;
using std::chrono::hours;

constexpr char kDevice[] = "dev-1";

struct Key {
  std::shared_ptr<const crypto::Signer> signer;
  std::shared_ptr<const crypto::Verifier> verifier;
  std::string public_pem;
};

Key NewKey() {
  auto pem = crypto::GenerateEd25519KeyPair();
  EXPECT_TRUE(pem.ok()) << pem.status();
  return Key{*crypto::LoadEd25519Signer(pem->private_key_pem),
             *crypto::LoadEd25519Verifier(pem->public_key_pem), pem->public_key_pem};
}

class ReleaseTrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    first_ = Delegate(release_a_, std::nullopt, false);
    Reopen();
  }

  void Reopen() {
    trust_.reset();
    auto trust = ReleaseTrust::Open(root_.verifier, (dir_.path() / "trust.pb").string(), clock_,
                                    hours(24), &registry_);
    ASSERT_TRUE(trust.ok()) << trust.status();
    trust_ = *std::move(trust);
  }

  // `reset_floors` is keys rotate --reset-rollback-floors.
  v1::SignedDelegation Delegate(const Key& key, const std::optional<v1::SignedDelegation>& previous,
                                bool revoke_previous, bool reset_floors = false) {
    std::optional<v1::ReleaseKeyDelegation> decoded;
    if (previous) decoded = *manifest::DecodeCanonicalDelegation(previous->canonical_delegation());
    auto d = manifest::NextDelegation(decoded, key.public_pem, clock_.Now(), hours(24 * 90),
                                      revoke_previous);
    EXPECT_TRUE(d.ok()) << d.status();
    if (reset_floors) d->set_rollback_floor_epoch(d->rollback_floor_epoch() + 1);
    return *manifest::SignDelegation(*d, *root_.signer);
  }

  // An updater trusting trust_'s keys, deciding probation at the swap: these tests are about
  // keys. Build a new one after Reopen().
  std::unique_ptr<Updater> NewUpdater(StateStore& state, ModelHost& host) {
    ProbationPolicy probation;
    probation.window = std::chrono::seconds(0);
    return std::make_unique<Updater>(state, host, *engines_, transport_, trust_->keys(), clock_,
                                     dir_.path().string(), RetryPolicy{}, probation);
  }

  // A check-in answer as the server makes it: delegation, desired state, signed timestamp.
  v1::CheckInResponse Answer(const Key& key, const v1::SignedDelegation& delegation,
                             std::vector<v1::DesiredModel> desired = {},
                             const std::string& device = kDevice) {
    v1::CheckInResponse r;
    *r.mutable_delegation() = delegation;
    for (auto& d : desired) *r.add_desired() = std::move(d);
    v1::CheckInTimestamp t;
    t.set_device_id(device);
    t.mutable_issued_at()->set_seconds(ToUnixSeconds(ServerNow()));
    t.mutable_expires_at()->set_seconds(ToUnixSeconds(ServerNow() + hours(24)));
    t.set_desired_sha256(manifest::DesiredDigest(r.desired()));
    *r.mutable_timestamp() = *manifest::SignTimestamp(t, *key.signer);
    return r;
  }

  v1::DesiredModel Release(const Key& key, const std::string& version, const std::string& bytes,
                           uint64_t metadata_version) {
    fakes::ReleaseSpec spec;
    spec.version = version;
    spec.artifact = bytes;
    spec.metadata_version = metadata_version;
    spec.expires_at = clock_.Now() + hours(24);
    transport_.AddArtifact(bytes);
    return *fakes::MakeDesired(spec, *key.signer);
  }

  // The server's clock: the device's (clock_) unless a test sets it apart.
  Clock::TimePoint ServerNow() const { return clock_.Now() + server_ahead_; }

  fakes::ScratchDir dir_{"release_trust_test"};
  FakeClock clock_;
  std::chrono::seconds server_ahead_{0};
  metrics::Registry registry_;
  Key root_ = NewKey();
  Key release_a_ = NewKey();
  Key release_b_ = NewKey();
  v1::SignedDelegation first_;
  std::unique_ptr<ReleaseTrust> trust_;
  fakes::FakeDeviceTransport transport_;
  std::unique_ptr<EngineFactory> engines_ = MakeOpenCvEngineFactory();
};

TEST_F(ReleaseTrustTest, UpdaterFollowsARotationAndRefusesTheRevokedKey) {
  auto state = StateStore::Open((dir_.path() / "state.db").string());
  ASSERT_TRUE(state.ok()) << state.status();
  ModelHost host;
  std::unique_ptr<Updater> owned = NewUpdater(**state, host);
  Updater& updater = *owned;
  const std::string v1 = ReadFileBytes(TestDataPath("classifier_v1.onnx"));
  const std::string v2 = ReadFileBytes(TestDataPath("classifier_v2.onnx"));
  ASSERT_FALSE(v1.empty() || v2.empty()) << "run edgefleet_test_models";

  // Release key A under delegation 1.
  v1::DesiredModel first = Release(release_a_, "1.0", v1, 1);
  ASSERT_TRUE(trust_->AcceptAnswer(Answer(release_a_, first_, {first}), kDevice).ok());
  ASSERT_TRUE(updater.Apply(first).ok());
  EXPECT_EQ(host.Get("classifier")->version, "1.0");

  // The root rotates to B and revokes A; the agent follows without re-enrolling.
  v1::SignedDelegation second = Delegate(release_b_, first_, /*revoke_previous=*/true);
  clock_.Advance(std::chrono::minutes(1));
  v1::DesiredModel next = Release(release_b_, "2.0", v2, 2);
  absl::Status accepted = trust_->AcceptAnswer(Answer(release_b_, second, {next}), kDevice);
  ASSERT_TRUE(accepted.ok()) << accepted;
  ASSERT_TRUE(updater.Apply(next).ok());
  EXPECT_EQ(host.Get("classifier")->version, "2.0");
  EXPECT_EQ(trust_->Status().delegation_version(), 2u);

  // Whoever kept A signs a release: refused as SIGNATURE, the detail naming the revocation.
  v1::DesiredModel forged = Release(release_a_, "3.0", v1, 3);
  absl::Status refused = updater.Apply(forged);
  EXPECT_EQ(FailureReasonOf(refused), v1::FAILURE_REASON_SIGNATURE) << refused;
  EXPECT_NE(refused.message().find("revoked"), std::string::npos) << refused;
  EXPECT_EQ(host.Get("classifier")->version, "2.0");
  bool reported = false;
  for (const auto& e : transport_.ReportedEvents()) {
    reported |= e.version() == "3.0" && e.kind() == v1::UPDATE_EVENT_KIND_FAILED &&
                e.reason() == v1::FAILURE_REASON_SIGNATURE &&
                e.detail().find("revoked") != std::string::npos;
  }
  EXPECT_TRUE(reported);
  // And an answer that key A signs, with the old delegation, is not acted on at all.
  clock_.Advance(std::chrono::minutes(1));
  absl::Status answer = trust_->AcceptAnswer(Answer(release_a_, first_, {forged}), kDevice);
  EXPECT_EQ(FailureReasonOf(answer), v1::FAILURE_REASON_SIGNATURE) << answer;
  EXPECT_NE(answer.message().find("revoked"), std::string::npos) << answer;
}

// TUF's fast-forward attack: whoever holds the release key signs a huge metadata version, which
// the device accepts and which then locks out every real release. The root revokes that key and
// orders the floors reset; the device recovers without re-enrolling, once, and the floor that
// the next real release sets protects it again, across restarts.
TEST_F(ReleaseTrustTest, AFastForwardedDeviceRecoversWhenTheRootResetsTheFloorsOnce) {
  auto state = StateStore::Open((dir_.path() / "state.db").string());
  ASSERT_TRUE(state.ok()) << state.status();
  trust_->SetRollbackFloorReset([&] { return (*state)->ForgetMetadataVersions(); });
  ModelHost host;
  std::unique_ptr<Updater> owned = NewUpdater(**state, host);
  Updater& updater = *owned;
  const std::string v1 = ReadFileBytes(TestDataPath("classifier_v1.onnx"));
  const std::string v2 = ReadFileBytes(TestDataPath("classifier_v2.onnx"));
  ASSERT_FALSE(v1.empty() || v2.empty()) << "run edgefleet_test_models";

  // The attacker, holding release key A, fast-forwards the model to metadata version 10^12.
  v1::DesiredModel forged = Release(release_a_, "6.6.6", v1, 1'000'000'000'000);
  ASSERT_TRUE(trust_->AcceptAnswer(Answer(release_a_, first_, {forged}), kDevice).ok());
  ASSERT_TRUE(updater.Apply(forged).ok());
  // The real server's next release is locked out.
  clock_.Advance(std::chrono::minutes(1));
  v1::DesiredModel real_a = Release(release_a_, "2.0", v2, 7);
  ASSERT_TRUE(trust_->AcceptAnswer(Answer(release_a_, first_, {real_a}), kDevice).ok());
  EXPECT_EQ(FailureReasonOf(updater.Apply(real_a)), v1::FAILURE_REASON_ROLLBACK);

  // A rotation alone (revoking A) keeps the floor: the device stays locked out.
  v1::SignedDelegation rotated = Delegate(release_b_, first_, /*revoke_previous=*/true);
  clock_.Advance(std::chrono::minutes(1));
  v1::DesiredModel real_b = Release(release_b_, "2.0", v2, 8);
  ASSERT_TRUE(trust_->AcceptAnswer(Answer(release_b_, rotated, {real_b}), kDevice).ok());
  EXPECT_EQ(FailureReasonOf(updater.Apply(real_b)), v1::FAILURE_REASON_ROLLBACK);

  // The root orders the floors reset: the real release is accepted, and sets the floor again.
  v1::SignedDelegation reset = Delegate(release_b_, rotated, false, /*reset_floors=*/true);
  clock_.Advance(std::chrono::minutes(1));
  v1::DesiredModel again = Release(release_b_, "2.0", v2, 9);
  ASSERT_TRUE(trust_->AcceptAnswer(Answer(release_b_, reset, {again}), kDevice).ok());
  absl::Status recovered = updater.Apply(again);
  ASSERT_TRUE(recovered.ok()) << recovered;
  EXPECT_EQ(host.Get("classifier")->version, "2.0");
  EXPECT_EQ(*(*state)->HighestMetadataVersion("classifier"), 9u);

  // The reset happened once: after a restart, with the same delegation, an older release the
  // new key signed is a rollback again, and the attacker's manifest stays refused.
  Reopen();
  trust_->SetRollbackFloorReset([&] { return (*state)->ForgetMetadataVersions(); });
  std::unique_ptr<Updater> restarted = NewUpdater(**state, host);
  clock_.Advance(std::chrono::minutes(1));
  v1::DesiredModel older = Release(release_b_, "1.0", v1, 8);
  ASSERT_TRUE(trust_->AcceptAnswer(Answer(release_b_, reset, {older}), kDevice).ok());
  EXPECT_EQ(FailureReasonOf(restarted->Apply(older)), v1::FAILURE_REASON_ROLLBACK);
  EXPECT_EQ(FailureReasonOf(restarted->Apply(forged)), v1::FAILURE_REASON_SIGNATURE);
  EXPECT_EQ(host.Get("classifier")->version, "2.0");
}

TEST_F(ReleaseTrustTest, AnswersMustBeSignedFreshForThisDeviceAndMatchTheirTimestamp) {
  v1::CheckInResponse good = Answer(release_a_, first_);
  ASSERT_TRUE(trust_->AcceptAnswer(good, kDevice).ok());

  clock_.Advance(std::chrono::minutes(1));
  EXPECT_FALSE(trust_->AcceptAnswer(Answer(release_a_, first_, {}, "dev-2"), kDevice).ok());
  // Signed by a key the root never delegated.
  EXPECT_EQ(FailureReasonOf(trust_->AcceptAnswer(Answer(release_b_, first_), kDevice)),
            v1::FAILURE_REASON_SIGNATURE);
  // Manifests swapped into a signed answer.
  v1::CheckInResponse mixed = Answer(release_a_, first_);
  *mixed.add_desired() = Release(release_a_, "1.0", "bytes", 1);
  EXPECT_EQ(FailureReasonOf(trust_->AcceptAnswer(mixed, kDevice)), v1::FAILURE_REASON_SIGNATURE);
  // No timestamp at all.
  v1::CheckInResponse bare = Answer(release_a_, first_);
  bare.clear_timestamp();
  EXPECT_FALSE(trust_->AcceptAnswer(bare, kDevice).ok());
  EXPECT_NE(trust_->Status().last_refusal().find("no signed timestamp"), std::string::npos);
}

TEST_F(ReleaseTrustTest, OlderAnswersAndOldDelegationsAreRefusedAcrossRestarts) {
  v1::CheckInResponse old_answer = Answer(release_a_, first_);
  clock_.Advance(std::chrono::minutes(5));
  v1::SignedDelegation second = Delegate(release_b_, first_, true);
  ASSERT_TRUE(trust_->AcceptAnswer(Answer(release_b_, second), kDevice).ok());

  Reopen();  // an agent restart
  EXPECT_EQ(trust_->Status().delegation_version(), 2u);
  EXPECT_EQ(trust_->Status().release_key_id(), release_b_.signer->KeyId());
  // The older answer (signed by A, with delegation 1) is a replay: not acted on.
  absl::Status replay = trust_->AcceptAnswer(old_answer, kDevice);
  EXPECT_FALSE(replay.ok());
  EXPECT_EQ(trust_->Status().delegation_version(), 2u);
  // An answer from B that is older than the newest seen is a freeze/replay as well.
  clock_.Advance(-std::chrono::minutes(3));
  absl::Status older = trust_->AcceptAnswer(Answer(release_b_, second), kDevice);
  EXPECT_EQ(FailureReasonOf(older), v1::FAILURE_REASON_ROLLBACK) << older;
  EXPECT_NE(older.message().find("older than the newest"), std::string::npos) << older;
}

TEST_F(ReleaseTrustTest, NoFreshTimestampForLongerThanTheLimitRaisesTheFreezeAlarm) {
  ASSERT_TRUE(trust_->AcceptAnswer(Answer(release_a_, first_), kDevice).ok());
  v1::CheckInResponse frozen = Answer(release_a_, first_);  // what a freezer keeps replaying
  clock_.Advance(hours(23));
  EXPECT_FALSE(trust_->CheckFreshness());
  EXPECT_FALSE(trust_->Status().stale());

  clock_.Advance(hours(2));
  // The replayed answer is not fresh: it expired, and it keeps nothing fresh.
  EXPECT_EQ(FailureReasonOf(trust_->AcceptAnswer(frozen, kDevice)), v1::FAILURE_REASON_EXPIRED);
  EXPECT_TRUE(trust_->CheckFreshness());
  v1::ReleaseTrustStatus status = trust_->Status();
  EXPECT_TRUE(status.stale());
  EXPECT_EQ(status.timestamp_age_seconds(), 25u * 3600);
  EXPECT_EQ(status.freshness_limit_seconds(), 24u * 3600);
  const std::string text = registry_.Serialize();
  EXPECT_NE(text.find("edgefleet_agent_release_metadata_stale 1"), std::string::npos) << text;
  EXPECT_NE(text.find("edgefleet_agent_check_in_answers_refused_total{reason=\"FAILURE_REASON_"
                      "EXPIRED\"} 1"),
            std::string::npos)
      << text;

  // Still stale after a restart; a fresh answer clears it.
  Reopen();
  EXPECT_TRUE(trust_->Status().stale());
  ASSERT_TRUE(trust_->AcceptAnswer(Answer(release_a_, first_), kDevice).ok());
  EXPECT_FALSE(trust_->Status().stale());
  EXPECT_NE(registry_.Serialize().find("edgefleet_agent_release_metadata_stale 0"),
            std::string::npos);
}

// A device clock a day and an hour ahead: the server's answers expire "before" the device's now,
// yet they are fresh; the signed time judges them, and a freeze is still noticed on time.
TEST_F(ReleaseTrustTest, ADeviceClockADayAheadJudgesAnswersByTheServersSignedTime) {
  server_ahead_ = -hours(25);
  ASSERT_TRUE(trust_->AcceptAnswer(Answer(release_a_, first_), kDevice).ok());
  EXPECT_EQ(trust_->ClockOffset(), -hours(25));
  EXPECT_EQ(ToUnixSeconds(trust_->trusted_clock().Now()), ToUnixSeconds(ServerNow()));
  EXPECT_EQ(trust_->Status().clock_offset_seconds(), -25 * 3600);
  EXPECT_FALSE(trust_->CheckFreshness());

  v1::CheckInResponse frozen = Answer(release_a_, first_);  // what a freezer keeps replaying
  clock_.Advance(hours(23));
  ASSERT_TRUE(trust_->AcceptAnswer(frozen, kDevice).ok());  // the newest again: no news
  EXPECT_FALSE(trust_->CheckFreshness());
  clock_.Advance(hours(2));
  EXPECT_EQ(FailureReasonOf(trust_->AcceptAnswer(frozen, kDevice)), v1::FAILURE_REASON_EXPIRED);
  EXPECT_TRUE(trust_->CheckFreshness());
  EXPECT_EQ(trust_->Status().timestamp_age_seconds(), 25u * 3600);

  // The offset survives a restart: fresh answers are taken at once.
  Reopen();
  EXPECT_EQ(trust_->ClockOffset(), -hours(25));
  ASSERT_TRUE(trust_->AcceptAnswer(Answer(release_a_, first_), kDevice).ok());
  EXPECT_FALSE(trust_->CheckFreshness());
}

// A device clock a day and an hour behind never saw answers as expired, but it must not take a
// day longer to notice a freeze either.
TEST_F(ReleaseTrustTest, ADeviceClockADayBehindStillNoticesAFreezeOnTime) {
  server_ahead_ = hours(25);
  ASSERT_TRUE(trust_->AcceptAnswer(Answer(release_a_, first_), kDevice).ok());
  EXPECT_EQ(trust_->ClockOffset(), hours(25));
  clock_.Advance(hours(23));
  EXPECT_FALSE(trust_->CheckFreshness());
  clock_.Advance(hours(2));
  EXPECT_TRUE(trust_->CheckFreshness());
  EXPECT_EQ(trust_->Status().timestamp_age_seconds(), 25u * 3600);
}

TEST_F(ReleaseTrustTest, ANewAgentThatNeverHeardFromTheServerGoesStaleToo) {
  clock_.Advance(hours(25));
  EXPECT_TRUE(trust_->CheckFreshness());
  EXPECT_FALSE(trust_->Status().has_newest_timestamp());
}

}  // namespace
}  // namespace edgefleet::agent
