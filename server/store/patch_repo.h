// PatchStore records differential updates between artifact pairs: queued, ready, or not worth it.
// PatchRepo is its PostgreSQL implementation; its mutating methods run in the caller's Tx.
// Computations are claimed with a lease (Claim, Renew, Finish), so that server replicas on one
// database compute each pair once and a replica that dies mid-computation hands the pair on.
#pragma once

#include <chrono>
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

// A pending pair whose lease the claiming replica now holds.
struct PatchClaim {
  std::string from_sha256;
  std::string to_sha256;
  int attempts = 0;  // computations started for the pair, this one included
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
  // Claims the oldest pending pair that nobody holds (never leased, or its lease expired) for
  // `owner` until `lease` from now, and counts the attempt. Pending pairs whose lease expired
  // after `max_attempts` computations are recorded failed instead (a pair that kills every
  // replica computing it). nullopt when nothing is claimable.
  virtual absl::StatusOr<std::optional<PatchClaim>> Claim(Tx& tx, const std::string& owner,
                                                          std::chrono::seconds lease,
                                                          int max_attempts) = 0;
  // Extends `owner`'s lease on a pending pair to `lease` from now; false when `owner` no longer
  // holds it (another replica took the pair over, or it is finished).
  virtual absl::StatusOr<bool> Renew(Tx& tx, const std::string& from_sha256,
                                     const std::string& to_sha256, const std::string& owner,
                                     std::chrono::seconds lease) = 0;
  // Records the outcome of `owner`'s computation and releases the lease; false (nothing
  // recorded) when `owner` no longer holds the pair.
  virtual absl::StatusOr<bool> Finish(Tx& tx, const PatchRecord& record,
                                      const std::string& owner) = 0;
  virtual absl::StatusOr<std::optional<PatchRecord>> Find(const std::string& from_sha256,
                                                          const std::string& to_sha256) = 0;
  // The ready patch stored under `patch_sha256`, if any.
  virtual absl::StatusOr<std::optional<PatchRecord>> FindByPatch(
      const std::string& patch_sha256) = 0;
  virtual absl::StatusOr<PatchBacklog> Backlog() = 0;
};

// The PostgreSQL PatchStore.
class PatchRepo final : public PatchStore {
 public:
  explicit PatchRepo(Database& db) : db_(db) {}
  absl::StatusOr<bool> Enqueue(Tx& tx, const std::string& from_sha256,
                               const std::string& to_sha256) override;
  absl::StatusOr<std::optional<PatchClaim>> Claim(Tx& tx, const std::string& owner,
                                                  std::chrono::seconds lease,
                                                  int max_attempts) override;
  absl::StatusOr<bool> Renew(Tx& tx, const std::string& from_sha256, const std::string& to_sha256,
                             const std::string& owner, std::chrono::seconds lease) override;
  absl::StatusOr<bool> Finish(Tx& tx, const PatchRecord& record, const std::string& owner) override;
  absl::StatusOr<std::optional<PatchRecord>> Find(const std::string& from_sha256,
                                                  const std::string& to_sha256) override;
  absl::StatusOr<std::optional<PatchRecord>> FindByPatch(const std::string& patch_sha256) override;
  absl::StatusOr<PatchBacklog> Backlog() override;

 private:
  Database& db_;
};

}  // namespace edgefleet::server
