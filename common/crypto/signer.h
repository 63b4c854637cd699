// Ed25519 signing and verification of release manifests, behind interfaces so tests can fake them.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edgefleet::crypto {

inline constexpr size_t kEd25519SignatureSize = 64;

// PEM text: PKCS#8 ("BEGIN PRIVATE KEY") and SubjectPublicKeyInfo ("BEGIN PUBLIC KEY").
struct KeyPairPem {
  std::string private_key_pem;
  std::string public_key_pem;
};

absl::StatusOr<KeyPairPem> GenerateEd25519KeyPair();

class Signer {
 public:
  virtual ~Signer() = default;
  // Raw 64-byte Ed25519 signature over `message`.
  virtual absl::StatusOr<std::string> Sign(std::string_view message) const = 0;
  virtual std::string PublicKeyPem() const = 0;
  // First 16 hex chars of SHA-256 over the raw 32-byte public key; names the key in manifests.
  virtual std::string KeyId() const = 0;
};

class Verifier {
 public:
  virtual ~Verifier() = default;
  // OK when `signature` is valid for `message`; PermissionDenied "signature does not verify"
  // when it is not; InvalidArgument when the signature has the wrong length.
  virtual absl::Status Verify(std::string_view message, std::string_view signature) const = 0;
  virtual std::string KeyId() const = 0;
};

// InvalidArgument when the PEM does not parse or is not an Ed25519 key.
absl::StatusOr<std::unique_ptr<Signer>> LoadEd25519Signer(std::string_view private_key_pem);
absl::StatusOr<std::unique_ptr<Verifier>> LoadEd25519Verifier(std::string_view public_key_pem);

}  // namespace edgefleet::crypto
