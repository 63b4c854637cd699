// Verification failures carry a machine-readable reason so the agent can report exactly why a
// release was refused (signature, expiry, rollback, digest, length, oversize, ...).
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "edgefleet/v1/device.pb.h"

namespace edgefleet {

// A status whose payload names `reason`; the code is chosen from the reason.
absl::Status VerificationError(v1::FailureReason reason, std::string_view message);

// The reason attached by VerificationError, or `fallback` when the status carries none.
v1::FailureReason FailureReasonOf(const absl::Status& status,
                                  v1::FailureReason fallback = v1::FAILURE_REASON_UNSPECIFIED);

}  // namespace edgefleet
