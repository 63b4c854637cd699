#include "server/enrollment/release_trust.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/core/files.h"
#include "common/crypto/signer.h"
#include "common/manifest/trust.h"

namespace edgefleet::server {
namespace {

namespace fs = std::filesystem;

bool Exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

absl::StatusOr<std::optional<v1::SignedDelegation>> ReadDelegation(const fs::path& path) {
  if (!Exists(path)) return std::nullopt;
  auto bytes = ReadFile(path.string());
  if (!bytes.ok()) return bytes.status();
  v1::SignedDelegation d;
  if (!d.ParseFromString(*bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path.string(), " is not a delegation (edgefleetctl keys delegate writes one)"));
  }
  return d;
}

// The demo root: made here when nothing was configured, kept online under `dir`.
absl::StatusOr<std::unique_ptr<crypto::Signer>> LoadOrCreateOnlineRoot(const fs::path& dir,
                                                                       std::string* public_pem) {
  if (!Exists(dir / "root.key")) {
    auto keys = crypto::GenerateEd25519KeyPair();
    if (!keys.ok()) return keys.status();
    if (auto s = WriteFileAtomically((dir / "root.key").string(), keys->private_key_pem, true);
        !s.ok())
      return s;
    if (auto s = WriteFileAtomically((dir / "root.pub").string(), keys->public_key_pem, false);
        !s.ok())
      return s;
  }
  auto private_pem = ReadFile((dir / "root.key").string());
  if (!private_pem.ok()) return private_pem.status();
  auto signer = crypto::LoadEd25519Signer(*private_pem);
  if (!signer.ok()) return signer.status();
  *public_pem = (*signer)->PublicKeyPem();
  return signer;
}

}  // namespace

absl::StatusOr<ServerReleaseTrust> LoadOrCreateReleaseTrust(
    const std::string& keys_dir, const std::string& release_public_key_pem, Clock::TimePoint now) {
  const fs::path dir(keys_dir);
  const fs::path delegation_path = dir / "delegation.bin";
  auto release = crypto::LoadEd25519Verifier(release_public_key_pem);
  if (!release.ok()) return release.status();
  const std::string release_key_id = (*release)->KeyId();
  auto held = ReadDelegation(delegation_path);
  if (!held.ok()) return held.status();

  ServerReleaseTrust trust;
  trust.root_online = Exists(dir / "root.key") || !Exists(dir / "root.pub");
  std::unique_ptr<crypto::Signer> online_root;
  if (trust.root_online) {
    auto root = LoadOrCreateOnlineRoot(dir, &trust.root_public_key_pem);
    if (!root.ok()) return root.status();
    online_root = *std::move(root);
  } else {
    auto pem = ReadFile((dir / "root.pub").string());
    if (!pem.ok()) return pem.status();
    trust.root_public_key_pem = *std::move(pem);
  }
  auto root = crypto::LoadEd25519Verifier(trust.root_public_key_pem);
  if (!root.ok()) return root.status();

  std::optional<v1::ReleaseKeyDelegation> decoded;
  if (held->has_value()) {
    auto d = manifest::VerifyDelegationSignature(**held, **root);
    if (!d.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(delegation_path.string(), ": ", d.status().message()));
    }
    decoded = *std::move(d);
  }
  const bool usable = decoded.has_value() && decoded->key_id() == release_key_id &&
                      FromUnixSeconds(decoded->expires_at().seconds()) > now;
  if (!trust.root_online) {
    if (!usable) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the release key ", release_key_id, " has no valid delegation in ",
          delegation_path.string(), " (",
          !decoded.has_value()                  ? "missing"
          : decoded->key_id() != release_key_id ? absl::StrCat("it names key ", decoded->key_id())
                                                : "expired",
          "): run 'edgefleetctl keys delegate --root ROOT.key --release-public-key ",
          (dir / "release.pub").string(), " --out ", delegation_path.string(),
          "' where the root key is kept"));
    }
  } else if (!usable ||
             FromUnixSeconds(decoded->expires_at().seconds()) - now < kDelegationRenewBefore) {
    // Following the held delegation keeps the version increasing and revokes a replaced key.
    auto next = manifest::NextDelegation(decoded, release_public_key_pem, now,
                                         kOnlineDelegationValidity, /*revoke_previous=*/true);
    if (!next.ok()) return next.status();
    auto signed_delegation = manifest::SignDelegation(*next, *online_root);
    if (!signed_delegation.ok()) return signed_delegation.status();
    if (auto s = WriteFileAtomically(delegation_path.string(),
                                     signed_delegation->SerializeAsString(), false);
        !s.ok())
      return s;
    decoded = *std::move(next);
    *held = *std::move(signed_delegation);
  }
  trust.delegation = **held;
  trust.decoded = *decoded;
  return trust;
}

}  // namespace edgefleet::server
