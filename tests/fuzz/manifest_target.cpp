// Fuzzing signed release metadata: the canonical decoders (which must be the strict inverse of the
// encoders) and everything verification does after them.
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/crypto/signer.h"
#include "common/manifest/manifest.h"
#include "common/manifest/trust.h"
#include "tests/fuzz/input_targets.h"

namespace edgefleet::fuzz {
namespace {

// Fixed keys (generated once with `openssl genpkey -algorithm ed25519`), so that an input that
// once failed replays the same way forever. They sign nothing outside this harness.
constexpr char kRootPrivate[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIAemdUjOQfjkLaI0pAywm+L2Pepl9u1OyPCC4i3NB8vm\n"
    "-----END PRIVATE KEY-----\n";
constexpr char kReleasePrivate[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIMvPGI3oOGOr9UidF1Bg40yYUJk4eMxvWIpbHrTVIkaQ\n"
    "-----END PRIVATE KEY-----\n";

const Clock::TimePoint kNow{std::chrono::seconds(1'800'000'000)};

struct Keys {
  std::shared_ptr<const crypto::Signer> root;
  std::shared_ptr<const crypto::Signer> release;
  std::shared_ptr<const crypto::Verifier> root_verifier;
  v1::SignedDelegation delegation;  // root -> release, valid at kNow
};

std::shared_ptr<const crypto::Signer> LoadSigner(const char* pem) {
  auto signer = crypto::LoadEd25519Signer(pem);
  Require(signer.ok(), "the harness's fixed key loads");
  return std::shared_ptr<const crypto::Signer>(std::move(*signer));
}

const Keys& FixedKeys() {
  static const Keys* keys = [] {
    auto* k = new Keys;
    k->root = LoadSigner(kRootPrivate);
    k->release = LoadSigner(kReleasePrivate);
    auto verifier = crypto::LoadEd25519Verifier(k->root->PublicKeyPem());
    Require(verifier.ok(), "the root's public key loads");
    k->root_verifier = std::shared_ptr<const crypto::Verifier>(std::move(*verifier));
    auto next = manifest::NextDelegation(std::nullopt, k->release->PublicKeyPem(),
                                         kNow - std::chrono::hours(1), std::chrono::hours(24 * 365),
                                         /*revoke_previous=*/false);
    Require(next.ok(), "the harness's delegation is made");
    auto signed_delegation = manifest::SignDelegation(*next, *k->root);
    Require(signed_delegation.ok(), "the harness's delegation is signed");
    k->delegation = *signed_delegation;
    return k;
  }();
  return *keys;
}

// A keyring holding the root and the release key. Verification only reads it; the modes that
// change a keyring (Adopt, Restore) make their own.
const manifest::ReleaseKeyring& Keyring() {
  static const manifest::ReleaseKeyring* keys = [] {
    auto* k = new manifest::ReleaseKeyring(FixedKeys().root_verifier);
    Require(k->Adopt(FixedKeys().delegation, kNow).ok(), "the harness's delegation is adopted");
    return k;
  }();
  return *keys;
}

std::string Signature(const crypto::Signer& signer, std::string_view bytes) {
  auto signature = signer.Sign(bytes);
  Require(signature.ok(), "signing works");
  return *signature;
}

absl::Status SignedManifestProto(std::string_view payload) {
  v1::SignedManifest signed_manifest;
  if (!signed_manifest.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InvalidArgumentError("not a SignedManifest");
  }
  auto verified = manifest::Verify(signed_manifest, Keyring(), kNow, /*min_metadata_version=*/3);
  // With the pinned root as the only key too (how a manifest signed by the root is checked).
  (void)manifest::Verify(signed_manifest, *FixedKeys().root_verifier, kNow, 3);
  return verified.status();
}

absl::Status CanonicalManifest(std::string_view payload) {
  auto decoded = manifest::DecodeCanonical(payload);
  if (!decoded.ok()) return decoded.status();
  Require(manifest::EncodeCanonical(*decoded) == payload,
          "DecodeCanonical accepted bytes EncodeCanonical does not produce");
  v1::SignedManifest signed_manifest;
  signed_manifest.set_canonical_manifest(std::string(payload));
  signed_manifest.set_signature(Signature(*FixedKeys().release, payload));
  signed_manifest.set_key_id(FixedKeys().release->KeyId());
  auto verified = manifest::Verify(signed_manifest, Keyring(), kNow, /*min_metadata_version=*/3);
  if (verified.ok()) {
    Require(verified->SerializeAsString() == decoded->SerializeAsString(),
            "Verify returned another manifest than the one signed");
  }
  return verified.status();
}

absl::Status CanonicalDelegation(std::string_view payload) {
  auto decoded = manifest::DecodeCanonicalDelegation(payload);
  if (!decoded.ok()) return decoded.status();
  Require(manifest::EncodeCanonical(*decoded) == payload,
          "DecodeCanonicalDelegation accepted bytes EncodeCanonical does not produce");
  v1::SignedDelegation signed_delegation;
  signed_delegation.set_canonical_delegation(std::string(payload));
  signed_delegation.set_signature(Signature(*FixedKeys().root, payload));
  signed_delegation.set_root_key_id(FixedKeys().root->KeyId());
  manifest::ReleaseKeyring keys(FixedKeys().root_verifier);
  absl::Status adopted = keys.Adopt(signed_delegation, kNow);
  if (adopted.ok()) {
    (void)keys.KeyFor(decoded->key_id(), kNow);
    // What a restart does: the snapshot of an adopted delegation restores.
    manifest::ReleaseKeyring restored(FixedKeys().root_verifier);
    Require(restored.Restore(keys.Snapshot()).ok(), "a keyring's own snapshot does not restore");
    Require(restored.highest_version() == keys.highest_version(),
            "a restored keyring forgot the highest delegation version");
  }
  return adopted;
}

absl::Status CanonicalTimestamp(std::string_view payload) {
  auto decoded = manifest::DecodeCanonicalTimestamp(payload);
  if (!decoded.ok()) return decoded.status();
  Require(manifest::EncodeCanonical(*decoded) == payload,
          "DecodeCanonicalTimestamp accepted bytes EncodeCanonical does not produce");
  v1::SignedTimestamp signed_timestamp;
  signed_timestamp.set_canonical_timestamp(std::string(payload));
  signed_timestamp.set_signature(Signature(*FixedKeys().release, payload));
  signed_timestamp.set_key_id(FixedKeys().release->KeyId());
  // The device and digest the timestamp names, so that expiry and freshness are reached.
  return manifest::VerifyTimestamp(signed_timestamp, Keyring(), decoded->device_id(),
                                   decoded->desired_sha256(), kNow, kNow - std::chrono::hours(1))
      .status();
}

absl::Status TrustState(std::string_view payload) {
  v1::ReleaseTrustState state;
  if (!state.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InvalidArgumentError("not a ReleaseTrustState");
  }
  manifest::ReleaseKeyring keys(FixedKeys().root_verifier);
  absl::Status restored = keys.Restore(state);
  if (restored.ok()) (void)keys.KeyFor(FixedKeys().release->KeyId(), kNow);
  return restored;
}

// A release valid at kNow, at metadata version 5.
v1::ReleaseManifest SampleManifest() {
  v1::ReleaseManifest m;
  m.set_model_name("detector");
  m.set_version("1.2.0");
  m.set_artifact_sha256(std::string(32, '\x5a'));
  m.set_artifact_size_bytes(123456);
  m.set_format(v1::MODEL_FORMAT_ONNX);
  m.set_metadata_version(5);
  m.mutable_expires_at()->set_seconds(1'900'000'000);
  return m;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> ManifestSeeds() {
  const Keys& keys = FixedKeys();
  std::vector<std::pair<std::string, std::string>> seeds;
  auto add = [&](std::string name, char mode, const std::string& payload) {
    seeds.emplace_back(std::move(name), std::string(1, mode) + payload);
  };
  auto signed_manifest = manifest::Sign(SampleManifest(), *keys.release);
  Require(signed_manifest.ok(), "the sample manifest is signed");
  add("signed_manifest", 0, signed_manifest->SerializeAsString());
  add("canonical_manifest", 1, signed_manifest->canonical_manifest());
  v1::ReleaseManifest with_reference = SampleManifest();
  with_reference.set_reference_profile_sha256(std::string(32, '\x11'));
  add("canonical_manifest_reference", 1, manifest::EncodeCanonical(with_reference));
  add("canonical_delegation", 2, keys.delegation.canonical_delegation());
  v1::CheckInTimestamp timestamp;
  timestamp.set_device_id("device-1");
  timestamp.mutable_issued_at()->set_seconds(1'800'000'000 - 60);
  timestamp.mutable_expires_at()->set_seconds(1'800'000'000 + 3600);
  timestamp.set_desired_sha256(std::string(32, '\x22'));
  timestamp.set_delegation_version(1);
  add("canonical_timestamp", 3, manifest::EncodeCanonical(timestamp));
  v1::ReleaseTrustState state;
  *state.mutable_delegation() = keys.delegation;
  state.set_highest_delegation_version(1);
  add("trust_state", 4, state.SerializeAsString());
  return seeds;
}

absl::Status RunManifest(std::string_view input) {
  if (input.empty()) return absl::InvalidArgumentError("empty input");
  const std::string_view payload = input.substr(1);
  switch (static_cast<unsigned char>(input[0]) % 5) {
    case 0:
      return SignedManifestProto(payload);
    case 1:
      return CanonicalManifest(payload);
    case 2:
      return CanonicalDelegation(payload);
    case 3:
      return CanonicalTimestamp(payload);
    default:
      return TrustState(payload);
  }
}

}  // namespace edgefleet::fuzz
