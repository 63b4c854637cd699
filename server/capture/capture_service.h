// Captured field data on the server. Devices upload captured requests (UploadCapture); each is
// checked (its size against the server's limit, its content, the device's daily byte cap of the
// release that asked for it) and stored exactly once per (device, stream, sequence): the payload
// content-addressed in a blob store, the index row in PostgreSQL. Operators list the index and
// read payloads through the admin API; old captures go after the retention.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "edgefleet/v1/capture.pb.h"
#include "server/artifacts/artifact_store.h"
#include "server/metrics/server_metrics.h"
#include "server/store/capture_repo.h"
#include "server/store/database.h"

namespace edgefleet::server::capture {

struct CaptureOptions {
  uint64_t max_capture_bytes = 1024 * 1024;  // a serialized record; larger ones are refused
  std::chrono::hours retention{24 * 30};
  // How far in the future a capture's time may be (device clocks drift).
  std::chrono::seconds max_clock_skew{3600};
};

class CaptureService {
 public:
  // `blobs` holds the payloads (a store of their own, beside the model artifacts).
  CaptureService(Transactor& db, CaptureStore& store, ArtifactStore& blobs, const Clock& clock,
                 ServerMetrics& metrics, CaptureOptions options = {});

  // Stores each capture once. A capture stored by an earlier delivery is accepted again without
  // a second row; one refused for good (over the size limit, over the day's cap, not asked for,
  // malformed) is listed with its reason and counted (edgefleet_captures_total{result}); nothing
  // of it is stored. Errors are for the whole upload (no stream id, the store failing): the
  // agent sends it again.
  absl::StatusOr<v1::UploadCaptureResponse> Ingest(const std::string& device_id,
                                                   const v1::UploadCaptureRequest& request);

  // The index, filtered (model required) and paged. InvalidArgument for a bad filter or token.
  absl::StatusOr<v1::ListCapturesResponse> List(const v1::ListCapturesRequest& request);
  // One capture's index row and payload, its digest checked. NotFound; DataLoss when the stored
  // bytes do not match their digest.
  absl::StatusOr<v1::GetCaptureResponse> Get(const v1::GetCaptureRequest& request);

  // Deletes captures received before the retention and the payloads no capture names any more.
  absl::Status Maintain();

 private:
  // Why a capture is refused ("" when it is not), and the metric's result label.
  struct Refusal {
    std::string result;
    std::string reason;
  };
  absl::StatusOr<Refusal> Store(const std::string& device_id, uint64_t stream_id,
                                const v1::CaptureUpload& upload);

  Transactor& db_;
  CaptureStore& store_;
  ArtifactStore& blobs_;
  const Clock& clock_;
  ServerMetrics& metrics_;
  const CaptureOptions options_;
};

// The index row a record gives (without id, device, digest, size or receipt time).
v1::CaptureInfo DescribeRecord(const v1::CaptureRecord& record);
// InvalidArgument saying what is wrong with a record (names, trigger, time, tensor shapes).
absl::Status CheckRecord(const v1::CaptureRecord& record);

}  // namespace edgefleet::server::capture
