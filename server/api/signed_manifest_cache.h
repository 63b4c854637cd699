// Signed release manifests, reused for a short while. Every check-in answer carries a manifest
// per desired version, and signing one (Ed25519, about 43 µs here) was about 7% of the server's
// CPU per check-in, for the same few manifests over and over. A manifest signed at most `reuse`
// ago is sent again: its expiry is then at most `reuse` earlier than a fresh one's, which
// against a lifetime of hours changes nothing a device checks.
#pragma once

#include <chrono>
#include <string>

#include "absl/status/statusor.h"
#include "common/core/bounded_cache.h"
#include "common/core/clock.h"
#include "common/crypto/signer.h"
#include "edgefleet/v1/manifest.pb.h"

namespace edgefleet::server {

class SignedManifestCache {
 public:
  // Manifests expire `ttl` after they are signed; one is reused for at most `reuse`.
  SignedManifestCache(const crypto::Signer& signer, std::chrono::seconds ttl,
                      std::chrono::seconds reuse)
      : signer_(signer), ttl_(ttl), reuse_(reuse) {}

  // `manifest` with its expiry set from `now` and signed, or the same manifest signed less than
  // `reuse` before `now`.
  absl::StatusOr<v1::SignedManifest> Sign(v1::ReleaseManifest manifest, Clock::TimePoint now);

 private:
  struct Entry {
    Clock::TimePoint signed_at;
    v1::SignedManifest manifest;
  };

  const crypto::Signer& signer_;
  const std::chrono::seconds ttl_;
  const std::chrono::seconds reuse_;
  BoundedCache<std::string, Entry> entries_{4096};  // by the manifest without its expiry
};

}  // namespace edgefleet::server
