// Captured requests on their way to the server: sent only inside the upload window of the spec
// they were captured under (hours of the device's local day) and only while the device is idle,
// one per UploadCapture call with its idempotency key (stream, outbox id). An item leaves the
// outbox once the server has answered for it: stored (now or before) or refused for good
// (counted and logged). What is outside its window, or unanswered, waits.
#pragma once

#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "agent/state/state_store.h"
#include "agent/update/device_transport.h"
#include "common/core/clock.h"

namespace edgefleet::agent {

// The hour (0-23) of the device's local day at `t`.
using LocalHourFn = std::function<int(Clock::TimePoint t)>;
// The system's time zone (localtime_r).
int SystemLocalHour(Clock::TimePoint t);

class CaptureUploader {
 public:
  // `idle` says whether the device is idle now (the agent: no Predict for
  // capture_idle_seconds); it is asked before each upload.
  CaptureUploader(StateStore& state, DeviceTransport& transport, const Clock& clock,
                  LocalHourFn local_hour, std::function<bool()> idle)
      : state_(state),
        transport_(transport),
        clock_(clock),
        local_hour_(std::move(local_hour)),
        idle_(std::move(idle)) {}

  struct FlushResult {
    uint64_t accepted = 0;        // the server keeps them
    uint64_t refused = 0;         // refused for good (dropped here, logged)
    uint64_t outside_window = 0;  // waiting for their upload window
    bool busy = false;            // stopped because the device was not idle
  };
  // Sends up to `max_items` queued captures whose window is open, oldest first, until the
  // device is busy or a send fails (an error: what was not answered stays queued).
  absl::StatusOr<FlushResult> Flush(size_t max_items = 64);

 private:
  StateStore& state_;
  DeviceTransport& transport_;
  const Clock& clock_;
  LocalHourFn local_hour_;
  std::function<bool()> idle_;
};

}  // namespace edgefleet::agent
