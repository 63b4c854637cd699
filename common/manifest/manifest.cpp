#include "common/manifest/manifest.h"

#include "absl/strings/str_cat.h"
#include "common/manifest/verification.h"

namespace edgefleet::manifest {
namespace {

constexpr std::string_view kMagic = "EFM1";
constexpr size_t kMaxFieldBytes = 4096;

enum Tag : uint8_t {
  kModelName = 1,
  kVersion = 2,
  kArtifactSha256 = 3,
  kArtifactSize = 4,
  kFormat = 5,
  kMetadataVersion = 6,
  kExpiresAtSeconds = 7,
};

void PutU32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out->push_back(static_cast<char>((v >> shift) & 0xff));
}

void PutField(std::string* out, Tag tag, std::string_view value) {
  out->push_back(static_cast<char>(tag));
  PutU32(out, static_cast<uint32_t>(value.size()));
  out->append(value);
}

std::string U64Bytes(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) s[i] = static_cast<char>(v & 0xff);
  return s;
}

uint64_t ReadU64(std::string_view b) {
  uint64_t v = 0;
  for (unsigned char c : b) v = (v << 8) | c;
  return v;
}

// Reads the next field, which must carry `tag`.
absl::StatusOr<std::string_view> TakeField(std::string_view* in, Tag tag) {
  if (in->size() < 5) return absl::InvalidArgumentError("manifest truncated");
  if (static_cast<uint8_t>((*in)[0]) != tag) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest field ", static_cast<int>(tag), " missing or out of order"));
  }
  uint32_t len = static_cast<uint32_t>(ReadU64(in->substr(1, 4)));
  if (len > kMaxFieldBytes || in->size() - 5 < len) {
    return absl::InvalidArgumentError("manifest field length out of bounds");
  }
  std::string_view value = in->substr(5, len);
  in->remove_prefix(5 + len);
  return value;
}

absl::StatusOr<uint64_t> TakeU64(std::string_view* in, Tag tag) {
  auto value = TakeField(in, tag);
  if (!value.ok()) return value.status();
  if (value->size() != 8)
    return absl::InvalidArgumentError("manifest integer field is not 8 bytes");
  return ReadU64(*value);
}

}  // namespace

std::string EncodeCanonical(const v1::ReleaseManifest& m) {
  std::string out(kMagic);
  PutField(&out, kModelName, m.model_name());
  PutField(&out, kVersion, m.version());
  PutField(&out, kArtifactSha256, m.artifact_sha256());
  PutField(&out, kArtifactSize, U64Bytes(m.artifact_size_bytes()));
  PutField(&out, kFormat, U64Bytes(static_cast<uint64_t>(m.format())));
  PutField(&out, kMetadataVersion, U64Bytes(m.metadata_version()));
  PutField(&out, kExpiresAtSeconds, U64Bytes(static_cast<uint64_t>(m.expires_at().seconds())));
  return out;
}

absl::StatusOr<v1::ReleaseManifest> DecodeCanonical(std::string_view in) {
  if (in.substr(0, kMagic.size()) != kMagic) {
    return absl::InvalidArgumentError("not a canonical edgefleet manifest (bad magic)");
  }
  in.remove_prefix(kMagic.size());
  v1::ReleaseManifest m;
  auto name = TakeField(&in, kModelName);
  if (!name.ok()) return name.status();
  auto version = TakeField(&in, kVersion);
  if (!version.ok()) return version.status();
  auto sha = TakeField(&in, kArtifactSha256);
  if (!sha.ok()) return sha.status();
  auto size = TakeU64(&in, kArtifactSize);
  if (!size.ok()) return size.status();
  auto format = TakeU64(&in, kFormat);
  if (!format.ok()) return format.status();
  auto metadata_version = TakeU64(&in, kMetadataVersion);
  if (!metadata_version.ok()) return metadata_version.status();
  auto expires = TakeU64(&in, kExpiresAtSeconds);
  if (!expires.ok()) return expires.status();
  if (!in.empty()) return absl::InvalidArgumentError("manifest has trailing bytes");
  if (sha->size() != 32) return absl::InvalidArgumentError("manifest SHA-256 is not 32 bytes");
  if (!v1::ModelFormat_IsValid(static_cast<int>(*format))) {
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
