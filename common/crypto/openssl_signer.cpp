// Ed25519 adapter: the only file that touches OpenSSL's EVP_PKEY API for release signing.
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <climits>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/crypto/openssl_error.h"
#include "common/crypto/sha256.h"
#include "common/crypto/signer.h"

namespace edgefleet::crypto {
namespace {

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxDeleter {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BioDeleter {
  void operator()(BIO* p) const { BIO_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

constexpr size_t kEd25519PublicKeySize = 32;

// Refuses encrypted PEM instead of letting OpenSSL prompt for a passphrase on the terminal.
int NoPassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) { return -1; }

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<BioPtr> ReadOnlyBio(std::string_view pem) {
  if (pem.size() > INT_MAX) return absl::InvalidArgumentError("PEM too large");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new_mem_buf failed");
  return bio;
}

absl::StatusOr<std::string> PublicKeyPemOf(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_PUBKEY(bio.get(), key) != 1) {
    return absl::InternalError(
        absl::StrCat("write Ed25519 public key PEM", internal::ConsumeOpenSslErrors()));
  }
  return BioToString(bio.get());
}

absl::StatusOr<std::string> KeyIdOf(EVP_PKEY* key) {
  unsigned char raw[kEd25519PublicKeySize];
  size_t len = sizeof(raw);
  if (EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 || len != kEd25519PublicKeySize) {
    return absl::InternalError(
        absl::StrCat("read raw Ed25519 public key", internal::ConsumeOpenSslErrors()));
  }
  return ToHex(Sha256Bytes(std::string_view(reinterpret_cast<const char*>(raw), len)))
      .substr(0, 16);
}

absl::Status CheckEd25519(EVP_PKEY* key, std::string_view what) {
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": not an Ed25519 key (type ",
                                                   EVP_PKEY_get_base_id(key), ")"));
  }
  return absl::OkStatus();
}

class OpenSslEd25519Signer final : public Signer {
 public:
  OpenSslEd25519Signer(PkeyPtr key, std::string public_key_pem, std::string key_id)
      : key_(std::move(key)),
        public_key_pem_(std::move(public_key_pem)),
        key_id_(std::move(key_id)) {}

  absl::StatusOr<std::string> Sign(std::string_view message) const override {
    MdCtxPtr ctx(EVP_MD_CTX_new());
    std::string signature(kEd25519SignatureSize, '\0');
    size_t sig_len = signature.size();
    // Ed25519 is a one-shot scheme: no digest is named and the whole message goes in at once.
    if (ctx == nullptr ||
        EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1 ||
        EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &sig_len,
                       reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) != 1) {
      return absl::InternalError(
          absl::StrCat("Ed25519 sign with key ", key_id_, internal::ConsumeOpenSslErrors()));
    }
    signature.resize(sig_len);
    return signature;
  }

  std::string PublicKeyPem() const override { return public_key_pem_; }
  std::string KeyId() const override { return key_id_; }

 private:
  PkeyPtr key_;
  std::string public_key_pem_;
  std::string key_id_;
};

class OpenSslEd25519Verifier final : public Verifier {
 public:
  OpenSslEd25519Verifier(PkeyPtr key, std::string key_id)
      : key_(std::move(key)), key_id_(std::move(key_id)) {}

  absl::Status Verify(std::string_view message, std::string_view signature) const override {
    if (signature.size() != kEd25519SignatureSize) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Ed25519 signature must be ", kEd25519SignatureSize, " bytes, got ", signature.size()));
    }
    MdCtxPtr ctx(EVP_MD_CTX_new());
    if (ctx == nullptr ||
        EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1) {
      return absl::InternalError(
          absl::StrCat("Ed25519 verify init", internal::ConsumeOpenSslErrors()));
    }
    int rc = EVP_DigestVerify(
        ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
        reinterpret_cast<const unsigned char*>(message.data()), message.size());
    // A bad signature leaves entries in the error queue; they are expected, not diagnostic.
    ERR_clear_error();
    if (rc != 1) {
      return absl::PermissionDeniedError(
          absl::StrCat("signature does not verify with key ", key_id_));
    }
    return absl::OkStatus();
  }

  std::string KeyId() const override { return key_id_; }

 private:
  PkeyPtr key_;
  std::string key_id_;
};

}  // namespace

absl::StatusOr<KeyPairPem> GenerateEd25519KeyPair() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (key == nullptr) {
    return absl::InternalError(
        absl::StrCat("generate Ed25519 key", internal::ConsumeOpenSslErrors()));
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr ||
      PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return absl::InternalError(
        absl::StrCat("write Ed25519 private key PEM", internal::ConsumeOpenSslErrors()));
  }
  KeyPairPem pair;
  pair.private_key_pem = BioToString(bio.get());
  absl::StatusOr<std::string> public_pem = PublicKeyPemOf(key.get());
  if (!public_pem.ok()) return public_pem.status();
  pair.public_key_pem = *std::move(public_pem);
  return pair;
}

absl::StatusOr<std::unique_ptr<Signer>> LoadEd25519Signer(std::string_view private_key_pem) {
  absl::StatusOr<BioPtr> bio = ReadOnlyBio(private_key_pem);
  if (!bio.ok()) return bio.status();
  PkeyPtr key(PEM_read_bio_PrivateKey(bio->get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("parse Ed25519 private key PEM", internal::ConsumeOpenSslErrors()));
  }
  if (absl::Status s = CheckEd25519(key.get(), "load signer"); !s.ok()) return s;
  absl::StatusOr<std::string> public_pem = PublicKeyPemOf(key.get());
  if (!public_pem.ok()) return public_pem.status();
  absl::StatusOr<std::string> key_id = KeyIdOf(key.get());
  if (!key_id.ok()) return key_id.status();
  return std::make_unique<OpenSslEd25519Signer>(std::move(key), *std::move(public_pem),
                                                *std::move(key_id));
}

absl::StatusOr<std::unique_ptr<Verifier>> LoadEd25519Verifier(std::string_view public_key_pem) {
  absl::StatusOr<BioPtr> bio = ReadOnlyBio(public_key_pem);
  if (!bio.ok()) return bio.status();
  PkeyPtr key(PEM_read_bio_PUBKEY(bio->get(), nullptr, NoPassphrase, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("parse Ed25519 public key PEM", internal::ConsumeOpenSslErrors()));
  }
  if (absl::Status s = CheckEd25519(key.get(), "load verifier"); !s.ok()) return s;
  absl::StatusOr<std::string> key_id = KeyIdOf(key.get());
  if (!key_id.ok()) return key_id.status();
  return std::make_unique<OpenSslEd25519Verifier>(std::move(key), *std::move(key_id));
}

}  // namespace edgefleet::crypto
