#include "common/crypto/signer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/escaping.h"
#include "common/crypto/certificate_authority.h"
#include "common/crypto/sha256.h"

namespace edgefleet::crypto {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct Loaded {
  std::unique_ptr<Signer> signer;
  std::unique_ptr<Verifier> verifier;
};

Loaded NewKeys() {
  absl::StatusOr<KeyPairPem> pair = GenerateEd25519KeyPair();
  EXPECT_TRUE(pair.ok()) << pair.status();
  absl::StatusOr<std::unique_ptr<Signer>> signer = LoadEd25519Signer(pair->private_key_pem);
  EXPECT_TRUE(signer.ok()) << signer.status();
  absl::StatusOr<std::unique_ptr<Verifier>> verifier = LoadEd25519Verifier(pair->public_key_pem);
  EXPECT_TRUE(verifier.ok()) << verifier.status();
  return {*std::move(signer), *std::move(verifier)};
}

std::string Unhex(std::string_view hex) {
  absl::StatusOr<std::string> bytes = FromHex(hex);
  EXPECT_TRUE(bytes.ok());
  return *bytes;
}

TEST(SignerTest, GeneratedPairSignsAndVerifies) {
  absl::StatusOr<KeyPairPem> pair = GenerateEd25519KeyPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_THAT(pair->private_key_pem, StartsWith("-----BEGIN PRIVATE KEY-----"));
  EXPECT_THAT(pair->public_key_pem, StartsWith("-----BEGIN PUBLIC KEY-----"));
  auto signer = LoadEd25519Signer(pair->private_key_pem);
  auto verifier = LoadEd25519Verifier(pair->public_key_pem);
  ASSERT_TRUE(signer.ok() && verifier.ok());
  EXPECT_EQ((*signer)->PublicKeyPem(), pair->public_key_pem);

  const std::string manifest = "{\"model\":\"detector\",\"version\":7}";
  absl::StatusOr<std::string> signature = (*signer)->Sign(manifest);
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_EQ(signature->size(), kEd25519SignatureSize);
  EXPECT_TRUE((*verifier)->Verify(manifest, *signature).ok());
}

// RFC 8032 section 7.1, TEST 1: proves interoperability, not just self-consistency.
TEST(SignerTest, MatchesRfc8032TestVector) {
  const std::string seed =
      Unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  // PKCS#8 PrivateKeyInfo for Ed25519 (RFC 8410) is a fixed prefix followed by the seed.
  const std::string der = Unhex("302e020100300506032b657004220420") + seed;
  const std::string pem =
      "-----BEGIN PRIVATE KEY-----\n" + absl::Base64Escape(der) + "\n-----END PRIVATE KEY-----\n";
  absl::StatusOr<std::unique_ptr<Signer>> signer = LoadEd25519Signer(pem);
  ASSERT_TRUE(signer.ok()) << signer.status();
  absl::StatusOr<std::string> signature = (*signer)->Sign("");
  ASSERT_TRUE(signature.ok());
  EXPECT_EQ(ToHex(*signature),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39"
            "701cf9b46bd25bf5f0595bbe24655141438e7a100b");
  // KeyId is defined over the raw public key, so other tools can compute it.
  const std::string public_key =
      Unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  EXPECT_EQ((*signer)->KeyId(), ToHex(Sha256Bytes(public_key)).substr(0, 16));
}

TEST(SignerTest, TamperedMessageIsRefused) {
  Loaded keys = NewKeys();
  absl::StatusOr<std::string> signature = keys.signer->Sign("version=7");
  ASSERT_TRUE(signature.ok());
  absl::Status status = keys.verifier->Verify("version=8", *signature);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(status.message(), HasSubstr("signature does not verify"));
}

TEST(SignerTest, TamperedSignatureIsRefused) {
  Loaded keys = NewKeys();
  absl::StatusOr<std::string> signature = keys.signer->Sign("payload");
  ASSERT_TRUE(signature.ok());
  for (size_t i : {size_t{0}, size_t{31}, size_t{63}}) {
    std::string flipped = *signature;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x01);
    EXPECT_EQ(keys.verifier->Verify("payload", flipped).code(), absl::StatusCode::kPermissionDenied)
        << "byte " << i;
  }
  EXPECT_EQ(keys.verifier->Verify("payload", signature->substr(0, 63)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(keys.verifier->Verify("payload", "").code(), absl::StatusCode::kInvalidArgument);
}

TEST(SignerTest, SignatureFromAnotherKeyIsRefused) {
  Loaded release = NewKeys();
  Loaded attacker = NewKeys();
  absl::StatusOr<std::string> signature = attacker.signer->Sign("payload");
  ASSERT_TRUE(signature.ok());
  EXPECT_EQ(release.verifier->Verify("payload", *signature).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(SignerTest, KeyIdIsStableAcrossLoadsAndDiffersBetweenKeys) {
  absl::StatusOr<KeyPairPem> pair = GenerateEd25519KeyPair();
  ASSERT_TRUE(pair.ok());
  auto signer = LoadEd25519Signer(pair->private_key_pem);
  auto signer_again = LoadEd25519Signer(pair->private_key_pem);
  auto verifier = LoadEd25519Verifier(pair->public_key_pem);
  ASSERT_TRUE(signer.ok() && signer_again.ok() && verifier.ok());
  const std::string id = (*signer)->KeyId();
  EXPECT_EQ(id.size(), 16u);
  EXPECT_TRUE(FromHex(id).ok()) << id;
  EXPECT_EQ((*signer_again)->KeyId(), id);
  EXPECT_EQ((*verifier)->KeyId(), id);
  EXPECT_NE(NewKeys().signer->KeyId(), id);
}

TEST(SignerTest, MalformedOrWrongTypeKeysAreInvalidArgument) {
  EXPECT_EQ(LoadEd25519Signer("garbage").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadEd25519Signer("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadEd25519Verifier("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<KeyPairPem> pair = GenerateEd25519KeyPair();
  ASSERT_TRUE(pair.ok());
  // A public key is not a signing key, and vice versa.
  EXPECT_EQ(LoadEd25519Signer(pair->public_key_pem).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadEd25519Verifier(pair->private_key_pem).status().code(),
            absl::StatusCode::kInvalidArgument);
  // An ECDSA key (what the device CA uses) must not be accepted as a release key.
  absl::StatusOr<KeyAndCsr> ec = GenerateKeyAndCsr("device-1");
  ASSERT_TRUE(ec.ok());
  absl::Status wrong_type = LoadEd25519Signer(ec->private_key_pem).status();
  EXPECT_EQ(wrong_type.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong_type.message(), HasSubstr("not an Ed25519 key"));
}

TEST(SignerTest, OpenSslCommandLineAcceptsSignature) {
  if (std::system("openssl version > /dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl CLI";
  std::string dir = ::testing::TempDir() + "/signer_test_XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  absl::StatusOr<KeyPairPem> pair = GenerateEd25519KeyPair();
  ASSERT_TRUE(pair.ok());
  auto signer = LoadEd25519Signer(pair->private_key_pem);
  ASSERT_TRUE(signer.ok());
  const std::string message = "release manifest bytes";
  absl::StatusOr<std::string> signature = (*signer)->Sign(message);
  ASSERT_TRUE(signature.ok());
  auto write = [&](const std::string& name, const std::string& data) {
    std::ofstream(dir + "/" + name, std::ios::binary) << data;
  };
  write("pub.pem", pair->public_key_pem);
  write("msg", message);
  write("sig", *signature);
  const std::string verify = "openssl pkeyutl -verify -pubin -inkey " + dir +
                             "/pub.pem -rawin -in " + dir + "/msg -sigfile " + dir +
                             "/sig > /dev/null 2>&1";
  EXPECT_EQ(std::system(verify.c_str()), 0);
  write("msg", message + "!");
  EXPECT_NE(std::system(verify.c_str()), 0);
}

}  // namespace
}  // namespace edgefleet::crypto
