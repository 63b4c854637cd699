// PatchStore records differential updates between artifact pairs: queued, ready, or not worth it.
// PatchRepo is its PostgreSQL implementation; its mutating methods run in the caller's Tx.
#pragma once

#include <map>
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

// The queue's state at a glance, for /metrics.
struct PatchBacklog {
  std::map<std::string, int64_t> by_state;  // pending, ready, not_smaller, failed (zeros included)
  double oldest_pending_age_seconds = 0;    // by the database's clock; 0 when none is pending
};

class PatchStore {
 public:
  virtual ~PatchStore() = default;

  // Inserts a pending row unless the pair is known; true when this call queued it.
  virtual absl::StatusOr<bool> Enqueue(Tx& tx, const std::string& from_sha256,
                                       const std::string& to_sha256) = 0;
  // Records the outcome of a computation.
  virtual absl::Status Finish(Tx& tx, const PatchRecord& record) = 0;
  virtual absl::StatusOr<std::optional<PatchRecord>> Find(const std::string& from_sha256,
                                                          const std::string& to_sha256) = 0;
  // The ready patch stored under `patch_sha256`, if any.
  virtual absl::StatusOr<std::optional<PatchRecord>> FindByPatch(
      const std::string& patch_sha256) = 0;
  // Pending rows, e.g. left by a restart mid-computation.
  virtual absl::StatusOr<std::vector<PatchRecord>> Pending() = 0;
  virtual absl::StatusOr<PatchBacklog> Backlog() = 0;
};

// The PostgreSQL PatchStore.
class PatchRepo final : public PatchStore {
 public:
  explicit PatchRepo(Database& db) : db_(db) {}
  absl::StatusOr<bool> Enqueue(Tx& tx, const std::string& from_sha256,
                               const std::string& to_sha256) override;
  absl::Status Finish(Tx& tx, const PatchRecord& record) override;
  absl::StatusOr<std::optional<PatchRecord>> Find(const std::string& from_sha256,
                                                  const std::string& to_sha256) override;
  absl::StatusOr<std::optional<PatchRecord>> FindByPatch(const std::string& patch_sha256) override;
  absl::StatusOr<std::vector<PatchRecord>> Pending() override;
  absl::StatusOr<PatchBacklog> Backlog() override;

 private:
  Database& db_;
};

}  // namespace edgefleet::server
