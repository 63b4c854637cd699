// CaptureStore keeps the index of captured field data (migration 0013): one row per
// (device, outbox stream, sequence), naming the payload's SHA-256 in the capture blob store.
// CaptureRepo is its PostgreSQL implementation; methods taking a Tx run in the caller's.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "edgefleet/v1/capture.pb.h"
#include "server/store/database.h"
#include "server/store/paging.h"

namespace edgefleet::server {

// What a list of captures is filtered on.
struct CaptureFilter {
  std::string model_name;
  std::string version;                // empty: every version
  std::optional<int64_t> since_unix;  // captured at or after
};

class CaptureStore {
 public:
  virtual ~CaptureStore() = default;

  // Serializes captures of one device until `tx` ends, so that two uploads cannot both pass the
  // daily cap. NotFound for an unknown device.
  virtual absl::Status LockDevice(Tx& tx, const std::string& device_id) = 0;
  // The id of the capture stored under this key, if any.
  virtual absl::StatusOr<std::optional<int64_t>> FindByKey(Tx& tx, const std::string& device_id,
                                                           uint64_t stream_id,
                                                           uint64_t sequence) = 0;
  // The daily byte cap of the capture requests of the releases that target (or targeted) the
  // device with this model version; nullopt when none asks for capture.
  virtual absl::StatusOr<std::optional<uint64_t>> DailyCap(Tx& tx, const std::string& device_id,
                                                           const std::string& model_name,
                                                           const std::string& version) = 0;
  // Bytes of the device's captures stored for the UTC day of `day_unix`.
  virtual absl::StatusOr<uint64_t> BytesOnDay(Tx& tx, const std::string& device_id,
                                              int64_t day_unix) = 0;
  // Stores the index row (info.capture_id and received_at are assigned); answers the id.
  virtual absl::StatusOr<int64_t> Insert(Tx& tx, const std::string& device_id, uint64_t stream_id,
                                         uint64_t sequence, const v1::CaptureInfo& info,
                                         int64_t now_unix) = 0;
  // Captures matching `filter`, oldest id first, ids after `page.after`.
  virtual absl::StatusOr<Page<v1::CaptureInfo>> ListPage(const CaptureFilter& filter,
                                                         const PageRequest& page) = 0;
  // NotFound "capture X not found".
  virtual absl::StatusOr<v1::CaptureInfo> Get(const std::string& capture_id) = 0;
  // Deletes the rows received before `before_unix`; answers the digests no row names any more
  // (their blobs may go).
  virtual absl::StatusOr<std::vector<std::string>> DeleteBefore(Tx& tx, int64_t before_unix) = 0;
};

class CaptureRepo final : public CaptureStore {
 public:
  explicit CaptureRepo(Database& db) : db_(db) {}
  absl::Status LockDevice(Tx& tx, const std::string& device_id) override;
  absl::StatusOr<std::optional<int64_t>> FindByKey(Tx& tx, const std::string& device_id,
                                                   uint64_t stream_id, uint64_t sequence) override;
  absl::StatusOr<std::optional<uint64_t>> DailyCap(Tx& tx, const std::string& device_id,
                                                   const std::string& model_name,
                                                   const std::string& version) override;
  absl::StatusOr<uint64_t> BytesOnDay(Tx& tx, const std::string& device_id,
                                      int64_t day_unix) override;
  absl::StatusOr<int64_t> Insert(Tx& tx, const std::string& device_id, uint64_t stream_id,
                                 uint64_t sequence, const v1::CaptureInfo& info,
                                 int64_t now_unix) override;
  absl::StatusOr<Page<v1::CaptureInfo>> ListPage(const CaptureFilter& filter,
                                                 const PageRequest& page) override;
  absl::StatusOr<v1::CaptureInfo> Get(const std::string& capture_id) override;
  absl::StatusOr<std::vector<std::string>> DeleteBefore(Tx& tx, int64_t before_unix) override;

 private:
  Database& db_;
};

}  // namespace edgefleet::server
