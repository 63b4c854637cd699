// The server's release trust chain from <data_dir>/keys: an offline root's delegation checked at
// start, and the demo mode that holds a root online and issues its own delegations.
#include "server/enrollment/release_trust.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/core/files.h"
#include "common/crypto/signer.h"
#include "common/manifest/trust.h"
#include "tests/fakes/scratch_dir.h"

namespace edgefleet::server {
namespace {

namespace fs = std::filesystem;
using std::chrono::hours;

class ServerReleaseTrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    release_ = *crypto::GenerateEd25519KeyPair();
    root_ = *crypto::GenerateEd25519KeyPair();
  }

  std::string Keys() const { return dir_.path().string(); }

  void WriteRootPublicKey() {
    ASSERT_TRUE(WriteFileAtomically(Keys() + "/root.pub", root_.public_key_pem, false).ok());
  }

  // What `edgefleetctl keys delegate` writes, signed by `root_private_pem`.
  void WriteDelegation(const std::string& release_public_pem, hours validity,
                       const std::string& root_private_pem) {
    auto d =
        manifest::NextDelegation(std::nullopt, release_public_pem, clock_.Now(), validity, false);
    ASSERT_TRUE(d.ok()) << d.status();
    auto signer = crypto::LoadEd25519Signer(root_private_pem);
    auto signed_delegation = manifest::SignDelegation(*d, **signer);
    ASSERT_TRUE(WriteFileAtomically(Keys() + "/delegation.bin",
                                    signed_delegation->SerializeAsString(), false)
                    .ok());
  }

  fakes::ScratchDir dir_{"server_release_trust"};
  FakeClock clock_;
  crypto::KeyPairPem release_;
  crypto::KeyPairPem root_;
};

TEST_F(ServerReleaseTrustTest, OfflineRootNeedsAValidDelegationOfTheReleaseKey) {
  WriteRootPublicKey();
  auto missing = LoadOrCreateReleaseTrust(Keys(), release_.public_key_pem, clock_.Now());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(missing.status().message().find("edgefleetctl keys delegate"), std::string::npos)
      << missing.status();

  crypto::KeyPairPem other = *crypto::GenerateEd25519KeyPair();
  WriteDelegation(other.public_key_pem, hours(24), root_.private_key_pem);
  auto wrong_key = LoadOrCreateReleaseTrust(Keys(), release_.public_key_pem, clock_.Now());
  EXPECT_NE(wrong_key.status().message().find("names key"), std::string::npos)
      << wrong_key.status();

  WriteDelegation(release_.public_key_pem, hours(24), other.private_key_pem);
  auto wrong_root = LoadOrCreateReleaseTrust(Keys(), release_.public_key_pem, clock_.Now());
  EXPECT_EQ(wrong_root.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(wrong_root.status().message().find("pinned root"), std::string::npos)
      << wrong_root.status();

  WriteDelegation(release_.public_key_pem, hours(24), root_.private_key_pem);
  auto ok = LoadOrCreateReleaseTrust(Keys(), release_.public_key_pem, clock_.Now());
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_FALSE(ok->root_online);
  EXPECT_EQ(ok->root_public_key_pem, root_.public_key_pem);
  EXPECT_EQ(ok->decoded.delegation_version(), 1u);
  EXPECT_FALSE(fs::exists(dir_.path() / "root.key")) << "the server must not make a root here";

  clock_.Advance(hours(25));
  auto expired = LoadOrCreateReleaseTrust(Keys(), release_.public_key_pem, clock_.Now());
  EXPECT_NE(expired.status().message().find("expired"), std::string::npos) << expired.status();
}

TEST_F(ServerReleaseTrustTest, WithoutARootTheServerHoldsOneOnlineAndDelegatesItself) {
  auto first = LoadOrCreateReleaseTrust(Keys(), release_.public_key_pem, clock_.Now());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->root_online);
  EXPECT_TRUE(fs::exists(dir_.path() / "root.key"));
  auto root = crypto::LoadEd25519Verifier(first->root_public_key_pem);
  ASSERT_TRUE(root.ok());
  auto verified = manifest::VerifyDelegationSignature(first->delegation, **root);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->key_id(), (*crypto::LoadEd25519Verifier(release_.public_key_pem))->KeyId());

  // The next start reuses it; near its expiry, or for a new release key, it issues the next one.
  auto again = LoadOrCreateReleaseTrust(Keys(), release_.public_key_pem, clock_.Now());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->delegation.SerializeAsString(), first->delegation.SerializeAsString());
  clock_.Advance(kOnlineDelegationValidity - kDelegationRenewBefore + hours(1));
  auto renewed = LoadOrCreateReleaseTrust(Keys(), release_.public_key_pem, clock_.Now());
  ASSERT_TRUE(renewed.ok());
  EXPECT_EQ(renewed->decoded.delegation_version(), 2u);
  EXPECT_EQ(renewed->decoded.revoked_key_ids_size(), 0);

  crypto::KeyPairPem replacement = *crypto::GenerateEd25519KeyPair();
  auto rotated = LoadOrCreateReleaseTrust(Keys(), replacement.public_key_pem, clock_.Now());
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(rotated->decoded.delegation_version(), 3u);
  ASSERT_EQ(rotated->decoded.revoked_key_ids_size(), 1);
  EXPECT_EQ(rotated->decoded.revoked_key_ids(0), verified->key_id());
}

}  // namespace
}  // namespace edgefleet::server
