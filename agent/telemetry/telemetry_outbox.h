// Telemetry windows on their way to the server: each cut window waits in the agent's outbox
// (bounded, surviving restarts and days offline) and is removed only when the server has
// answered for it — stored (now or by an earlier delivery) or refused for good. Sent at least
// once; the server's (device, stream, sequence) key makes it stored exactly once.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "agent/state/state_store.h"
#include "agent/update/device_transport.h"
#include "edgefleet/v1/device.pb.h"
#include "edgefleet/v1/telemetry.pb.h"

namespace edgefleet::agent {

class TelemetryOutbox {
 public:
  TelemetryOutbox(StateStore& state, DeviceTransport& transport)
      : state_(state), transport_(transport) {}

  // Queues a window; its sequence is assigned when it is sent (its outbox id).
  absl::Status Enqueue(const v1::TelemetryWindow& window);

  struct FlushResult {
    uint64_t accepted = 0;  // windows the server keeps
    uint64_t refused = 0;   // windows the server refused for good (dropped here, logged)
  };
  // Sends what is queued, oldest first, in uploads of at most
  // RequestLimits::kTelemetryWindowsPerUpload, until the queue is empty or a send fails (what
  // was not answered stays queued for the next flush). Each upload carries the outbox's
  // cumulative telemetry drops (over budget, refused) once there are any.
  absl::StatusOr<FlushResult> Flush();

 private:
  absl::Status AttachDropCounts(v1::UploadTelemetryRequest& request);

  StateStore& state_;
  DeviceTransport& transport_;
};

}  // namespace edgefleet::agent
