#include "common/manifest/verification.h"

#include <string>

namespace edgefleet {
namespace {

constexpr char kReasonPayloadUrl[] = "type.edgefleet.dev/edgefleet.v1.FailureReason";

absl::StatusCode CodeFor(v1::FailureReason reason) {
  switch (reason) {
    case v1::FAILURE_REASON_SIGNATURE:
      return absl::StatusCode::kUnauthenticated;
    case v1::FAILURE_REASON_EXPIRED:
    case v1::FAILURE_REASON_ROLLBACK:
      return absl::StatusCode::kFailedPrecondition;
    case v1::FAILURE_REASON_OVERSIZE:
      return absl::StatusCode::kOutOfRange;
    case v1::FAILURE_REASON_DOWNLOAD:
      return absl::StatusCode::kUnavailable;
    case v1::FAILURE_REASON_NO_SPACE:
      return absl::StatusCode::kResourceExhausted;
    default:
      return absl::StatusCode::kDataLoss;
  }
}

}  // namespace

absl::Status VerificationError(v1::FailureReason reason, std::string_view message) {
  absl::Status status(CodeFor(reason), absl::string_view(message.data(), message.size()));
  status.SetPayload(kReasonPayloadUrl, absl::Cord(v1::FailureReason_Name(reason)));
  return status;
}

v1::FailureReason FailureReasonOf(const absl::Status& status, v1::FailureReason fallback) {
  auto payload = status.GetPayload(kReasonPayloadUrl);
  v1::FailureReason reason;
  if (payload && v1::FailureReason_Parse(std::string(*payload), &reason)) return reason;
  return fallback;
}

}  // namespace edgefleet
