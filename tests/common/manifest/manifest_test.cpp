#include "common/manifest/manifest.h"

#include <gtest/gtest.h>

#include "common/crypto/sha256.h"
#include "common/manifest/verification.h"

namespace edgefleet::manifest {
namespace {

class ManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto keys = crypto::GenerateEd25519KeyPair();
    ASSERT_TRUE(keys.ok()) << keys.status();
    auto signer = crypto::LoadEd25519Signer(keys->private_key_pem);
    ASSERT_TRUE(signer.ok()) << signer.status();
    signer_ = *std::move(signer);
    auto verifier = crypto::LoadEd25519Verifier(keys->public_key_pem);
    ASSERT_TRUE(verifier.ok()) << verifier.status();
    verifier_ = *std::move(verifier);
  }

  v1::ReleaseManifest Sample() const {
    v1::ReleaseManifest m;
    m.set_model_name("detector");
    m.set_version("7");
    m.set_artifact_sha256(crypto::Sha256Bytes("weights"));
    m.set_artifact_size_bytes(7);
    m.set_format(v1::MODEL_FORMAT_ONNX);
    m.set_metadata_version(42);
    m.mutable_expires_at()->set_seconds(ToUnixSeconds(clock_.Now()) + 3600);
    return m;
  }

  FakeClock clock_;
  std::unique_ptr<crypto::Signer> signer_;
  std::unique_ptr<crypto::Verifier> verifier_;
};

TEST_F(ManifestTest, CanonicalEncodingRoundTripsAndIsDeterministic) {
  v1::ReleaseManifest m = Sample();
  std::string a = EncodeCanonical(m);
  EXPECT_EQ(a, EncodeCanonical(m));
  EXPECT_EQ(a.substr(0, 4), "EFM1");
  auto decoded = DecodeCanonical(a);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->SerializeAsString(), m.SerializeAsString());
}

// The bytes a manifest without a reference profile encoded to before field 8 existed, written
// out by hand: signatures made then must still verify.
TEST_F(ManifestTest, WithoutAReferenceTheEncodingIsByteForByteAsBefore) {
  v1::ReleaseManifest m;
  m.set_model_name("detector");
  m.set_version("7");
  m.set_artifact_sha256(std::string(32, '\xab'));
  m.set_artifact_size_bytes(7);
  m.set_format(v1::MODEL_FORMAT_ONNX);
  m.set_metadata_version(42);
  m.mutable_expires_at()->set_seconds(1893456000);
  const std::string before = crypto::FromHex(
                                 "45464d3101000000086465746563746f72020000000137030000002"
                                 "0abababababababababababababababababababababababababababab"
                                 "abababab0400000008000000000000000705000000080000000000000"
                                 "0010600000008000000000000002a07000000080000000070dbd880")
                                 .value();
  EXPECT_EQ(EncodeCanonical(m), before);
  // A signature over the old bytes still verifies, and decodes to no reference.
  v1::SignedManifest signed_before;
  signed_before.set_canonical_manifest(before);
  signed_before.set_signature(signer_->Sign(before).value());
  signed_before.set_key_id(signer_->KeyId());
  clock_.Set(std::chrono::system_clock::from_time_t(1893456000 - 60));
  auto verified = Verify(signed_before, *verifier_, clock_.Now(), 0);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->reference_profile_sha256().empty());
}

TEST_F(ManifestTest, AReferenceDigestIsSignedAndRoundTrips) {
  v1::ReleaseManifest m = Sample();
  const std::string without = EncodeCanonical(m);
  m.set_reference_profile_sha256(crypto::Sha256Bytes("profile"));
  const std::string with = EncodeCanonical(m);
  EXPECT_EQ(with.substr(0, without.size()), without);  // appended as the last field
  auto decoded = DecodeCanonical(with);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->reference_profile_sha256(), m.reference_profile_sha256());
  auto signed_manifest = Sign(m, *signer_);
  ASSERT_TRUE(signed_manifest.ok());
  auto verified = Verify(*signed_manifest, *verifier_, clock_.Now(), 0);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->reference_profile_sha256(), m.reference_profile_sha256());
  // Not 32 bytes, or trailing bytes after it: refused.
  m.set_reference_profile_sha256("short");
  EXPECT_FALSE(DecodeCanonical(EncodeCanonical(m)).ok());
  EXPECT_FALSE(DecodeCanonical(with + "x").ok());
}

TEST_F(ManifestTest, DecodeRefusesTruncatedTrailingAndReorderedBytes) {
  std::string bytes = EncodeCanonical(Sample());
  for (size_t cut : {size_t{0}, size_t{3}, size_t{10}, bytes.size() - 1}) {
    EXPECT_FALSE(DecodeCanonical(bytes.substr(0, cut)).ok()) << "cut at " << cut;
  }
  EXPECT_FALSE(DecodeCanonical(bytes + "x").ok());
  std::string wrong_tag = bytes;
  wrong_tag[4] = 2;  // first field claims to be the version
  EXPECT_FALSE(DecodeCanonical(wrong_tag).ok());
}

// Found by fuzz_manifest (tests/fuzz/regressions/manifest/format_high_bits_decode_as_onnx): the
// format was narrowed to int before it was checked, so a format with high bits set decoded as
// ONNX and two byte strings decoded to the same manifest.
TEST_F(ManifestTest, DecodeRefusesAFormatWithHighBitsSet) {
  std::string bytes = EncodeCanonical(Sample());
  // The format's 8 value bytes follow its tag (5) and length (00 00 00 08).
  const size_t at = bytes.find(std::string("\x05\x00\x00\x00\x08", 5));
  ASSERT_NE(at, std::string::npos);
  bytes[at + 5 + 3] = 0x08;  // 0x0000000800000001
  EXPECT_FALSE(DecodeCanonical(bytes).ok());
}

TEST_F(ManifestTest, SignedManifestVerifies) {
  auto signed_manifest = Sign(Sample(), *signer_);
  ASSERT_TRUE(signed_manifest.ok()) << signed_manifest.status();
  EXPECT_EQ(signed_manifest->key_id(), verifier_->KeyId());
  auto verified = Verify(*signed_manifest, *verifier_, clock_.Now(), 42);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->model_name(), "detector");
  EXPECT_EQ(verified->metadata_version(), 42u);
}

TEST_F(ManifestTest, TamperedManifestIsRefusedAsSignatureFailure) {
  auto signed_manifest = Sign(Sample(), *signer_);
  ASSERT_TRUE(signed_manifest.ok());
  v1::SignedManifest tampered = *signed_manifest;
  // Flip one byte of the artifact digest inside the signed bytes.
  (*tampered.mutable_canonical_manifest())[30] ^= 0x01;
  auto result = Verify(tampered, *verifier_, clock_.Now(), 0);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(FailureReasonOf(result.status()), v1::FAILURE_REASON_SIGNATURE);

  v1::SignedManifest bad_signature = *signed_manifest;
  (*bad_signature.mutable_signature())[0] ^= 0x01;
  EXPECT_EQ(FailureReasonOf(Verify(bad_signature, *verifier_, clock_.Now(), 0).status()),
            v1::FAILURE_REASON_SIGNATURE);
}

TEST_F(ManifestTest, ManifestSignedByAnotherKeyIsRefused) {
  auto other_keys = crypto::GenerateEd25519KeyPair();
  ASSERT_TRUE(other_keys.ok());
  auto other_signer = crypto::LoadEd25519Signer(other_keys->private_key_pem);
  ASSERT_TRUE(other_signer.ok());
  auto signed_manifest = Sign(Sample(), **other_signer);
  ASSERT_TRUE(signed_manifest.ok());
  EXPECT_EQ(FailureReasonOf(Verify(*signed_manifest, *verifier_, clock_.Now(), 0).status()),
            v1::FAILURE_REASON_SIGNATURE);
}

TEST_F(ManifestTest, ExpiredManifestIsRefused) {
  auto signed_manifest = Sign(Sample(), *signer_);
  ASSERT_TRUE(signed_manifest.ok());
  clock_.Advance(std::chrono::hours(2));
  auto result = Verify(*signed_manifest, *verifier_, clock_.Now(), 0);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(FailureReasonOf(result.status()), v1::FAILURE_REASON_EXPIRED);
  EXPECT_NE(result.status().message().find("expired"), std::string::npos);
}

TEST_F(ManifestTest, LowerMetadataVersionIsRefusedAsRollback) {
  auto signed_manifest = Sign(Sample(), *signer_);
  ASSERT_TRUE(signed_manifest.ok());
  auto result = Verify(*signed_manifest, *verifier_, clock_.Now(), 43);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(FailureReasonOf(result.status()), v1::FAILURE_REASON_ROLLBACK);
}

TEST(VerificationErrorTest, ReasonSurvivesAndPlainStatusHasNone) {
  absl::Status s = VerificationError(v1::FAILURE_REASON_DIGEST, "digest mismatch");
  EXPECT_EQ(FailureReasonOf(s), v1::FAILURE_REASON_DIGEST);
  EXPECT_EQ(s.message(), "digest mismatch");
  EXPECT_EQ(FailureReasonOf(absl::InternalError("x"), v1::FAILURE_REASON_LOAD),
            v1::FAILURE_REASON_LOAD);
}

}  // namespace
}  // namespace edgefleet::manifest
