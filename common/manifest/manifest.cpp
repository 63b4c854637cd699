#include "common/manifest/manifest.h"

#include "absl/strings/str_cat.h"
#include "common/manifest/internal/canonical.h"
#include "common/manifest/verification.h"

namespace edgefleet::manifest {
namespace {

constexpr std::string_view kMagic = "EFM1";

enum Tag : uint8_t {
  kModelName = 1,
  kVersion = 2,
  kArtifactSha256 = 3,
  kArtifactSize = 4,
  kFormat = 5,
  kMetadataVersion = 6,
  kExpiresAtSeconds = 7,
  kReferenceProfileSha256 = 8,  // optional, last: absent in manifests without a reference
};

}  // namespace

std::string EncodeCanonical(const v1::ReleaseManifest& m) {
  internal::CanonicalWriter out(kMagic);
  out.Bytes(kModelName, m.model_name());
  out.Bytes(kVersion, m.version());
  out.Bytes(kArtifactSha256, m.artifact_sha256());
  out.U64(kArtifactSize, m.artifact_size_bytes());
  out.U64(kFormat, static_cast<uint64_t>(m.format()));
  out.U64(kMetadataVersion, m.metadata_version());
  out.U64(kExpiresAtSeconds, static_cast<uint64_t>(m.expires_at().seconds()));
  // Only when set, so a manifest without a reference encodes (and verifies) as before.
  if (!m.reference_profile_sha256().empty())
    out.Bytes(kReferenceProfileSha256, m.reference_profile_sha256());
  return out.Take();
}

absl::StatusOr<v1::ReleaseManifest> DecodeCanonical(std::string_view bytes) {
  internal::CanonicalReader in(bytes, "manifest");
  if (absl::Status s = in.Magic(kMagic); !s.ok()) return s;
  v1::ReleaseManifest m;
  auto name = in.Bytes(kModelName);
  if (!name.ok()) return name.status();
  auto version = in.Bytes(kVersion);
  if (!version.ok()) return version.status();
  auto sha = in.Bytes(kArtifactSha256);
  if (!sha.ok()) return sha.status();
  auto size = in.U64(kArtifactSize);
  if (!size.ok()) return size.status();
  auto format = in.U64(kFormat);
  if (!format.ok()) return format.status();
  auto metadata_version = in.U64(kMetadataVersion);
  if (!metadata_version.ok()) return metadata_version.status();
  auto expires = in.U64(kExpiresAtSeconds);
  if (!expires.ok()) return expires.status();
  if (!in.AtEnd()) {
    auto reference = in.Bytes(kReferenceProfileSha256);
    if (!reference.ok()) return reference.status();
    if (reference->size() != 32) {
      return absl::InvalidArgumentError("manifest reference profile SHA-256 is not 32 bytes");
    }
    m.set_reference_profile_sha256(std::string(*reference));
  }
  if (absl::Status s = in.End(); !s.ok()) return s;
  if (sha->size() != 32) return absl::InvalidArgumentError("manifest SHA-256 is not 32 bytes");
  // Checked before narrowing: 0x0000000800000001 must not pass as format 1 (decoding would then
  // accept bytes the encoder never produces).
  if (*format > static_cast<uint64_t>(v1::ModelFormat_MAX) ||
      !v1::ModelFormat_IsValid(static_cast<int>(*format))) {
    return absl::InvalidArgumentError("manifest names an unknown model format");
  }
  m.set_model_name(std::string(*name));
  m.set_version(std::string(*version));
  m.set_artifact_sha256(std::string(*sha));
  m.set_artifact_size_bytes(*size);
  m.set_format(static_cast<v1::ModelFormat>(*format));
  m.set_metadata_version(*metadata_version);
  m.mutable_expires_at()->set_seconds(static_cast<int64_t>(*expires));
  return m;
}

absl::StatusOr<v1::SignedManifest> Sign(const v1::ReleaseManifest& manifest,
                                        const crypto::Signer& signer) {
  v1::SignedManifest out;
  out.set_canonical_manifest(EncodeCanonical(manifest));
  auto signature = signer.Sign(out.canonical_manifest());
  if (!signature.ok()) return signature.status();
  out.set_signature(*std::move(signature));
  out.set_key_id(signer.KeyId());
  return out;
}

absl::StatusOr<v1::ReleaseManifest> Verify(const v1::SignedManifest& signed_manifest,
                                           const crypto::Verifier& verifier, Clock::TimePoint now,
                                           uint64_t min_metadata_version) {
  // The signature is checked before the bytes are interpreted at all.
  if (absl::Status s =
          verifier.Verify(signed_manifest.canonical_manifest(), signed_manifest.signature());
      !s.ok()) {
    return VerificationError(v1::FAILURE_REASON_SIGNATURE,
                             absl::StrCat("manifest signature: ", s.message()));
  }
  auto manifest = DecodeCanonical(signed_manifest.canonical_manifest());
  if (!manifest.ok()) {
    return VerificationError(v1::FAILURE_REASON_SIGNATURE,
                             std::string(manifest.status().message()));
  }
  const std::string what = absl::StrCat("manifest for model '", manifest->model_name(),
                                        "' version '", manifest->version(), "'");
  if (manifest->expires_at().seconds() <= ToUnixSeconds(now)) {
    return VerificationError(v1::FAILURE_REASON_EXPIRED, absl::StrCat(what, " expired"));
  }
  if (manifest->metadata_version() < min_metadata_version) {
    return VerificationError(
        v1::FAILURE_REASON_ROLLBACK,
        absl::StrCat(what, " has metadata version ", manifest->metadata_version(),
                     ", lower than the ", min_metadata_version, " already held"));
  }
  return manifest;
}

}  // namespace edgefleet::manifest
