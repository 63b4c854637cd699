// Whether a telemetry window from a device can be stored: the checks that need nothing but the
// window and the time (the device-specific one — does it run that model — needs the store).
// A refused window is refused for good, with a reason the device and the operator can read.
#pragma once

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "common/core/clock.h"
#include "edgefleet/v1/telemetry.pb.h"

namespace edgefleet::server::telemetry {

// Why a window was refused; also the `reason` label of the refused-windows counter.
enum class Refusal { kMalformed, kFuture, kExpired, kUnknownModel };
const char* RefusalName(Refusal refusal);  // "malformed", "future", "expired", "unknown_model"

struct WindowCheckPolicy {
  // Windows ending later than now plus this are from a device whose clock is wrong.
  std::chrono::seconds clock_skew{300};
  // Windows starting before now minus the retention would land in a dropped partition.
  std::chrono::hours retention{30 * 24};
  // Longest window an agent cuts (its telemetry interval is minutes, not days).
  std::chrono::hours max_length{24};
};

struct WindowVerdict {
  bool ok = true;
  Refusal refusal = Refusal::kMalformed;
  std::string reason;  // for the device: "window ends in the future (...)"
};

WindowVerdict CheckWindow(const v1::TelemetryWindow& window, Clock::TimePoint now,
                          const WindowCheckPolicy& policy);

}  // namespace edgefleet::server::telemetry
