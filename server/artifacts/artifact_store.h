// Content-addressed artifact storage: blobs are named by their SHA-256 and never change.
// The filesystem implementation is today's; the interface lets an object store slot in.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace edgefleet::server {

struct ArtifactInfo {
  std::string sha256;  // raw 32 bytes
  uint64_t size_bytes = 0;
};

// Looks at an upload's complete bytes before they become visible: `staged_path` is a local file
// holding them, `info` their digest and size. An error refuses the upload.
using StagedCheck =
    std::function<absl::Status(const ArtifactInfo& info, const std::string& staged_path)>;

// An upload in progress: hashed as bytes arrive, capped at a size limit, visible only after
// Commit. Destroying an uncommitted writer discards what it wrote.
class ArtifactWriter {
 public:
  virtual ~ArtifactWriter() = default;
  // ResourceExhausted once the upload would pass its size limit.
  virtual absl::Status Append(std::string_view data) = 0;
  // Makes the bytes visible under their digest once `check` (when set) accepts them; when it
  // refuses, the bytes are discarded and its error returned.
  virtual absl::StatusOr<ArtifactInfo> CommitIf(const StagedCheck& check) = 0;
  absl::StatusOr<ArtifactInfo> Commit() { return CommitIf(nullptr); }
};

class ArtifactReader {
 public:
  virtual ~ArtifactReader() = default;
  virtual uint64_t size_bytes() const = 0;
  // Up to `max_bytes` from `offset`; empty at the end.
  virtual absl::StatusOr<std::string> ReadAt(uint64_t offset, size_t max_bytes) = 0;
};

class ArtifactStore {
 public:
  virtual ~ArtifactStore() = default;
  virtual absl::StatusOr<std::unique_ptr<ArtifactWriter>> BeginUpload(uint64_t max_bytes) = 0;
  virtual absl::StatusOr<std::unique_ptr<ArtifactReader>> Open(std::string_view sha256) = 0;
  // A local file holding the blob, for tools that map whole files (the delta engine).
  virtual absl::StatusOr<std::string> LocalPath(std::string_view sha256) = 0;
  // Removes uploads that no writer holds any more (left by a crash); returns how many. Run at
  // start-up: an upload being written by another process sharing the store is kept.
  virtual absl::StatusOr<size_t> RemoveAbandonedUploads() = 0;
  // Deletes the blob (retention of captured data; model artifacts are never removed). NotFound
  // when there is none.
  virtual absl::Status Remove(std::string_view sha256) = 0;
};

// Stores blobs under <root>/sha256/<first two hex>/<hex>; uploads go to <root>/tmp first and are
// renamed into place, so a crash never leaves a partial blob under a digest name. A writer holds
// an exclusive flock on its temporary file, which tells RemoveAbandonedUploads what is in use.
std::unique_ptr<ArtifactStore> MakeFilesystemArtifactStore(const std::string& root);

}  // namespace edgefleet::server
