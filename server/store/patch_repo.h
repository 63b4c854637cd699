// PatchRepo records differential updates between artifact pairs: queued, ready, or not worth it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/store/database.h"

namespace edgefleet::server {

struct PatchRecord {
  enum class State { kPending, kReady, kNotSmaller, kFailed };
  std::string from_sha256;  // raw 32 bytes
  std::string to_sha256;
  State state = State::kPending;
  std::string codec;
  std::string patch_sha256;  // set when ready
  uint64_t size_bytes = 0;
  double compute_seconds = 0;
  std::string detail;
};

class PatchRepo {
 public:
  explicit PatchRepo(Database& db) : db_(db) {}

  // Inserts a pending row unless the pair is known; true when this call queued it.
  absl::StatusOr<bool> Enqueue(const std::string& from_sha256, const std::string& to_sha256);
  // Records the outcome of a computation.
  absl::Status Finish(const PatchRecord& record);
  absl::StatusOr<std::optional<PatchRecord>> Find(const std::string& from_sha256,
                                                  const std::string& to_sha256);
  // The ready patch stored under `patch_sha256`, if any.
  absl::StatusOr<std::optional<PatchRecord>> FindByPatch(const std::string& patch_sha256);
  // Pending rows, e.g. left by a restart mid-computation.
  absl::StatusOr<std::vector<PatchRecord>> Pending();

 private:
  Database& db_;
};

}  // namespace edgefleet::server
