// The agent's durable local state (identity, installed versions, update progress, offline outbox)
// kept in one SQLite database so that a crash or power cut never leaves half a state behind.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edgefleet::agent {

// Every method is one SQLite transaction (WAL, synchronous=FULL) and is safe to call from several
// threads at once. Errors carry the database path; a damaged file reads as kDataLoss.
class StateStore {
 public:
  // One installed (model, version): the verified artifact on disk plus the signed release that
  // vouched for it, kept so the agent can re-verify and report after a restart.
  struct InstalledVersion {
    std::string model_name;
    std::string version;
    std::string artifact_sha256;  // raw 32 bytes
    std::string path;             // where the artifact lives on disk
    std::string signed_manifest;  // serialized manifest bytes exactly as signed
    std::string signature;
    uint64_t metadata_version = 0;
    std::string metadata_proto;  // serialized edgefleet.v1.ModelVersion
  };

  // States of the update lifecycle (agent/update/lifecycle.h), each saved before the agent
  // enters it so that a restart resumes or rolls back. Stored by name, so values may be
  // appended without breaking existing databases.
  enum class UpdatePhase {
    kIdle,
    kFetching,
    kVerifying,
    kStaged,
    kActivating,
    kProbation,
    kCommitted,
    kRollingBack,
    kFailed,
  };

  struct UpdateRecord {
    std::string model_name;
    std::string version;
    std::string artifact_sha256;  // raw
    UpdatePhase phase = UpdatePhase::kIdle;
    std::string detail;
    uint64_t metadata_version = 0;  // with version and digest, names the release
    // Starts of the agent found this update in kProbation: a crash loop rolls it back.
    uint32_t restarts = 0;
    int reason_code = 0;  // edgefleet.v1.FailureReason of the error being handled, if any
  };

  // What the outbox holds, in the order its budget gives up items: captured field data first,
  // then telemetry windows; update events are never dropped (the server's rollout gates and the
  // operator's record need every one).
  enum class OutboxKind { kCapture, kTelemetry, kUpdateEvent };
  static constexpr OutboxKind kOutboxKinds[] = {OutboxKind::kCapture, OutboxKind::kTelemetry,
                                                OutboxKind::kUpdateEvent};

  struct OutboxItem {
    int64_t id = 0;  // strictly increasing, never reused: the item's sequence in the stream
    OutboxKind kind = OutboxKind::kUpdateEvent;
    std::string payload;
  };

  struct OutboxKindStats {
    uint64_t items = 0;
    uint64_t bytes = 0;
    uint64_t dropped = 0;  // ever, to stay inside the budget (persisted across restarts)
    uint64_t refused = 0;  // ever, refused for good by the server (persisted, see AckRefused)
  };

  struct Options {
    // The outbox's budget for payload bytes; the agent's outbox_max_bytes.
    uint64_t outbox_max_bytes = uint64_t{64} << 20;
  };

  // Opens (creating if missing) the database at `db_path` and creates or migrates its schema.
  // The parent directory must exist. A file that is not a healthy SQLite database is kDataLoss; a
  // schema newer than this build understands is kFailedPrecondition.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(const std::string& db_path,
                                                          Options options);
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(const std::string& db_path);

  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // --- identity ---
  absl::Status SetIdentity(const std::string& device_id);
  // kNotFound when the device has not enrolled yet.
  absl::StatusOr<std::string> DeviceId();

  // --- installed versions: at most a current and a previous one per model ---
  // Atomically makes `v` the model's current version. The old current becomes previous, and the
  // old previous is deleted and returned so the caller can remove its files. Committing the
  // version that is already current updates it in place; committing the previous one swaps the
  // two. Also raises the model's highest metadata version to `v.metadata_version`.
  absl::StatusOr<std::optional<InstalledVersion>> CommitVersion(const InstalledVersion& v);
  // Atomically makes the previous version current again and deletes the current one, which is
  // returned (if any) so the caller can remove its files. kFailedPrecondition when there is no
  // previous version.
  absl::StatusOr<std::optional<InstalledVersion>> RestorePrevious(const std::string& model_name);
  // Deletes the current version (a damaged one) and returns it, if any, so the caller can remove
  // its files; the previous version stays previous. The highest metadata version is kept.
  absl::StatusOr<std::optional<InstalledVersion>> DropCurrent(const std::string& model_name);
  absl::StatusOr<std::optional<InstalledVersion>> Current(const std::string& model_name);
  absl::StatusOr<std::optional<InstalledVersion>> Previous(const std::string& model_name);
  // The current version of every model, ordered by model name.
  absl::StatusOr<std::vector<InstalledVersion>> AllCurrent();

  // --- rollback protection: the highest metadata version ever accepted per model ---
  // 0 when none. Never decreases, even when versions are deleted.
  absl::StatusOr<uint64_t> HighestMetadataVersion(const std::string& model_name);
  // Sets the highest to max(current highest, v).
  absl::Status RaiseMetadataVersion(const std::string& model_name, uint64_t v);
  // Forgets every model's highest (TUF's fast-forward recovery, ordered by the root: see
  // ReleaseKeyDelegation.rollback_floor_epoch); the next accepted release sets it again.
  absl::Status ForgetMetadataVersions();

  // --- update lifecycle: one in-flight update per model ---
  absl::Status SaveUpdate(const UpdateRecord& record);
  absl::StatusOr<std::optional<UpdateRecord>> LoadUpdate(const std::string& model_name);
  absl::Status ClearUpdate(const std::string& model_name);
  // Every model's update record, ordered by model name (read back at start-up).
  absl::StatusOr<std::vector<UpdateRecord>> AllUpdates();

  // --- failed update attempts: the latest failing release per model, so that it is retried with
  // backoff and a bounded count, across restarts, and reported in the inventory ---
  struct UpdateFailure {
    std::string model_name;
    std::string version;
    std::string artifact_sha256;    // raw
    uint64_t metadata_version = 0;  // with version and digest, names the release
    uint32_t attempts = 0;          // failed attempts that count against the bound
    int64_t next_attempt_unix = 0;  // no attempt before this time
    int reason_code = 0;            // edgefleet.v1.FailureReason of the last failure
    std::string detail;
  };
  // Replaces the model's failure record.
  absl::Status SaveFailure(const UpdateFailure& failure);
  absl::StatusOr<std::optional<UpdateFailure>> LoadFailure(const std::string& model_name);
  // Every model's failure record, ordered by model name.
  absl::StatusOr<std::vector<UpdateFailure>> AllFailures();
  absl::Status ClearFailure(const std::string& model_name);

  // --- outbox: update events, telemetry windows and captured data waiting for the server ---
  // Stores `payload`, then keeps the outbox within its budget by dropping the oldest captures,
  // then the oldest telemetry, counting each drop; update events are never dropped (so a budget
  // full of events refuses nothing but telemetry and captures). One transaction.
  absl::Status Enqueue(OutboxKind kind, const std::string& payload);
  // A captured request: stored (like Enqueue) only when the bytes captured on the UTC day of
  // `now_unix`, this one included, stay within `max_bytes_per_day`; answers whether it was. The
  // day's count is kept apart from the outbox (it survives restarts, uploads and drops).
  absl::StatusOr<bool> EnqueueCapture(const std::string& payload, int64_t now_unix,
                                      uint64_t max_bytes_per_day);
  // Bytes captured on the UTC day of `now_unix`.
  absl::StatusOr<uint64_t> CaptureBytesOnDay(int64_t now_unix);
  // The oldest `limit` items of `kind`, oldest first. Does not remove them.
  absl::StatusOr<std::vector<OutboxItem>> Peek(OutboxKind kind, size_t limit);
  // Removes exactly these items (the ones the server acknowledged); unknown ids are ignored.
  absl::Status Ack(const std::vector<int64_t>& ids);
  // Removes these items of `kind`, which the server refused for good, and counts them in the
  // kind's `refused` in the same transaction; ids not held (or of another kind) are ignored and
  // not counted, so a repeated call counts nothing twice.
  absl::Status AckRefused(OutboxKind kind, const std::vector<int64_t>& ids);
  // Items, bytes and drops per kind, indexed like kOutboxKinds.
  absl::StatusOr<std::array<OutboxKindStats, 3>> OutboxStats();
  // A random id drawn when the database was created: with an item's id, the key the server
  // stores it under exactly once, unique even when a device's state is wiped and ids restart.
  absl::StatusOr<uint64_t> OutboxStreamId();

 private:
  // RestorePrevious when `promote_previous`, else DropCurrent.
  absl::StatusOr<std::optional<InstalledVersion>> RemoveCurrent(const std::string& model_name,
                                                                bool promote_previous);

  struct Impl;
  explicit StateStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "capture", "telemetry", "update_event" as stored.
const char* OutboxKindName(StateStore::OutboxKind kind);

// "Idle", "Fetching", ... as stored in the database and shown in logs.
const char* UpdatePhaseName(StateStore::UpdatePhase phase);

}  // namespace edgefleet::agent
