// Release manifests: the canonical byte encoding that is signed, and signing/verification.
// Server and agent both use this file so they agree on the signed bytes exactly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "common/crypto/signer.h"
#include "edgefleet/v1/manifest.pb.h"

namespace edgefleet::manifest {

// Canonical encoding: magic "EFM1", then every field in a fixed order as
// tag (1 byte) + big-endian length (4 bytes) + value; integers are 8-byte big-endian.
// Protobuf serialization is not canonical across implementations, so we never sign it.
std::string EncodeCanonical(const v1::ReleaseManifest& manifest);

// Strict inverse of EncodeCanonical: any other byte string is InvalidArgument.
absl::StatusOr<v1::ReleaseManifest> DecodeCanonical(std::string_view bytes);

absl::StatusOr<v1::SignedManifest> Sign(const v1::ReleaseManifest& manifest,
                                        const crypto::Signer& signer);

// Checks, in order: encoding, signature against the pinned key, expiry at `now`, and that the
// metadata version is not lower than `min_metadata_version` (rollback / freeze protection).
// Failures carry a FailureReason (see verification.h).
absl::StatusOr<v1::ReleaseManifest> Verify(const v1::SignedManifest& signed_manifest,
                                           const crypto::Verifier& verifier, Clock::TimePoint now,
                                           uint64_t min_metadata_version);

}  // namespace edgefleet::manifest
