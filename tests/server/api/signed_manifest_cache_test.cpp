// Signed manifests reused for a short while: each one verifies, is the release it was asked for,
// and expires a lifetime after it was signed; a manifest older than the reuse time is signed
// again, and any other release gets its own.
#include "server/api/signed_manifest_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <optional>

#include "common/manifest/manifest.h"
#include "tests/fakes/test_release.h"

namespace edgefleet::server {
namespace {

using std::chrono::seconds;

// Counts the signatures made, so a reused manifest shows as one not signed again.
class CountingSigner final : public crypto::Signer {
 public:
  explicit CountingSigner(const crypto::Signer& inner) : inner_(inner) {}
  absl::StatusOr<std::string> Sign(std::string_view message) const override {
    ++signed_;
    return inner_.Sign(message);
  }
  std::string PublicKeyPem() const override { return inner_.PublicKeyPem(); }
  std::string KeyId() const override { return inner_.KeyId(); }
  int signed_count() const { return signed_; }

 private:
  const crypto::Signer& inner_;
  mutable std::atomic<int> signed_{0};
};

class SignedManifestCacheTest : public testing::Test {
 protected:
  void SetUp() override {
    auto key = fakes::ReleaseKey::Generate();
    ASSERT_TRUE(key.ok()) << key.status();
    key_ = *std::move(key);
    signer_ = std::make_unique<CountingSigner>(key_->signer());
  }

  static v1::ReleaseManifest Release(const std::string& version, uint64_t metadata_version) {
    v1::ReleaseManifest m;
    m.set_model_name("detector");
    m.set_version(version);
    m.set_artifact_sha256(std::string(32, 'a'));
    m.set_artifact_size_bytes(1000);
    m.set_metadata_version(metadata_version);
    return m;
  }

  // The manifest as a device reads it at `now`.
  v1::ReleaseManifest Verified(const v1::SignedManifest& signed_manifest, Clock::TimePoint now) {
    auto verified = manifest::Verify(signed_manifest, key_->verifier(), now, 0);
    EXPECT_TRUE(verified.ok()) << verified.status();
    return verified.ok() ? *verified : v1::ReleaseManifest();
  }

  std::optional<fakes::ReleaseKey> key_;
  std::unique_ptr<CountingSigner> signer_;
  const Clock::TimePoint t0_ = FromUnixSeconds(1'800'000'000);
};

TEST_F(SignedManifestCacheTest, AManifestIsReusedWithinTheReuseTimeAndSignedAnewAfter) {
  SignedManifestCache cache(*signer_, seconds(3600), seconds(60));
  auto first = cache.Sign(Release("2.0", 7), t0_);
  ASSERT_TRUE(first.ok()) << first.status();
  auto again = cache.Sign(Release("2.0", 7), t0_ + seconds(59));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(signer_->signed_count(), 1);
  EXPECT_EQ(again->SerializeAsString(), first->SerializeAsString());
  const v1::ReleaseManifest read = Verified(*again, t0_ + seconds(59));
  EXPECT_EQ(read.version(), "2.0");
  EXPECT_EQ(read.metadata_version(), 7u);
  EXPECT_EQ(read.expires_at().seconds(), ToUnixSeconds(t0_ + seconds(3600)));

  auto later = cache.Sign(Release("2.0", 7), t0_ + seconds(60));
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(signer_->signed_count(), 2);
  EXPECT_EQ(Verified(*later, t0_ + seconds(60)).expires_at().seconds(),
            ToUnixSeconds(t0_ + seconds(3660)));
}

TEST_F(SignedManifestCacheTest, EachReleaseIsSignedForItself) {
  SignedManifestCache cache(*signer_, seconds(3600), seconds(60));
  // A new deployment of the same version is a new release (a higher metadata version).
  for (const auto& [version, metadata] :
       std::vector<std::pair<std::string, uint64_t>>{{"2.0", 7}, {"2.0", 8}, {"1.0", 8}}) {
    auto signed_manifest = cache.Sign(Release(version, metadata), t0_);
    ASSERT_TRUE(signed_manifest.ok()) << signed_manifest.status();
    const v1::ReleaseManifest read = Verified(*signed_manifest, t0_);
    EXPECT_EQ(read.version(), version);
    EXPECT_EQ(read.metadata_version(), metadata);
  }
  EXPECT_EQ(signer_->signed_count(), 3);
}

TEST_F(SignedManifestCacheTest, NoReuseTimeSignsEveryManifest) {
  SignedManifestCache cache(*signer_, seconds(30), seconds(0));
  for (int i = 0; i < 3; ++i) {
    auto signed_manifest = cache.Sign(Release("2.0", 7), t0_);
    ASSERT_TRUE(signed_manifest.ok()) << signed_manifest.status();
  }
  EXPECT_EQ(signer_->signed_count(), 3);
}

}  // namespace
}  // namespace edgefleet::server
