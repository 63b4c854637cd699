#include "server/api/signed_manifest_cache.h"

#include <utility>

#include "common/manifest/manifest.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace edgefleet::server {

absl::StatusOr<v1::SignedManifest> SignedManifestCache::Sign(v1::ReleaseManifest manifest,
                                                             Clock::TimePoint now) {
  manifest.clear_expires_at();
  std::string key;
  // Deterministic: the same fields give the same key in this process.
  {
    google::protobuf::io::StringOutputStream stream(&key);
    google::protobuf::io::CodedOutputStream out(&stream);
    out.SetSerializationDeterministic(true);
    manifest.SerializeToCodedStream(&out);
  }
  if (auto entry = entries_.Find(key);
      entry && now >= entry->signed_at && now - entry->signed_at < reuse_) {
    return std::move(entry->manifest);  // Find already made the copy
  }
  manifest.mutable_expires_at()->set_seconds(ToUnixSeconds(now + ttl_));
  auto signed_manifest = manifest::Sign(manifest, signer_);
  if (!signed_manifest.ok()) return signed_manifest.status();
  entries_.Put(std::move(key), Entry{now, *signed_manifest});
  return signed_manifest;
}

}  // namespace edgefleet::server
