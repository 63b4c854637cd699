#include "tests/fakes/fake_device_transport.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/crypto/sha256.h"

namespace edgefleet::fakes {

std::string FakeDeviceTransport::AddArtifact(const std::string& bytes) {
  std::string sha = crypto::Sha256Bytes(bytes);
  AddArtifactAs(sha, bytes);
  return sha;
}

void FakeDeviceTransport::AddArtifactAs(const std::string& sha256, const std::string& bytes) {
  std::lock_guard lock(mu_);
  artifacts_[sha256] = bytes;
}

void FakeDeviceTransport::SetBehavior(const std::string& sha256, const Behavior& behavior) {
  std::lock_guard lock(mu_);
  behaviors_[sha256] = behavior;
}

void FakeDeviceTransport::SetChunkSize(size_t bytes) {
  std::lock_guard lock(mu_);
  chunk_size_ = std::max<size_t>(1, bytes);
}

void FakeDeviceTransport::SetReportEventsFailing(bool failing) {
  std::lock_guard lock(mu_);
  report_failing_ = failing;
}

void FakeDeviceTransport::SetCheckInResponse(const v1::CheckInResponse& response) {
  std::lock_guard lock(mu_);
  check_in_response_ = response;
}

std::vector<FakeDeviceTransport::FetchCall> FakeDeviceTransport::Fetches() const {
  std::lock_guard lock(mu_);
  return fetches_;
}

std::vector<v1::UpdateEvent> FakeDeviceTransport::ReportedEvents() const {
  std::lock_guard lock(mu_);
  return events_;
}

std::vector<v1::UploadTelemetryRequest> FakeDeviceTransport::Telemetry() const {
  std::lock_guard lock(mu_);
  return telemetry_;
}

int FakeDeviceTransport::TotalCalls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

absl::StatusOr<v1::CheckInResponse> FakeDeviceTransport::CheckIn(const v1::CheckInRequest&) {
  std::lock_guard lock(mu_);
  ++calls_;
  return check_in_response_;
}

absl::Status FakeDeviceTransport::FetchArtifact(
    const std::string& sha256, uint64_t offset,
    const std::function<absl::Status(std::string_view)>& sink) {
  std::string bytes;
  std::optional<uint64_t> fail_after;
  size_t chunk_size;
  {
    std::lock_guard lock(mu_);
    ++calls_;
    fetches_.push_back({sha256, offset});
    auto it = artifacts_.find(sha256);
    if (it == artifacts_.end()) {
      return absl::NotFoundError(absl::StrCat("no artifact ", crypto::ToHex(sha256)));
    }
    bytes = it->second;
    Behavior& behavior = behaviors_[sha256];
    if (behavior.corrupt_byte && *behavior.corrupt_byte < bytes.size()) {
      bytes[*behavior.corrupt_byte] = static_cast<char>(bytes[*behavior.corrupt_byte] ^ 0xFF);
    }
    if (behavior.truncate_to && *behavior.truncate_to < bytes.size()) {
      bytes.resize(*behavior.truncate_to);
    }
    bytes += behavior.extra_bytes;
    fail_after = behavior.fail_after_bytes;
    behavior.fail_after_bytes.reset();
    chunk_size = chunk_size_;
  }
  if (offset > bytes.size()) return absl::OutOfRangeError("offset beyond the artifact");
  uint64_t end = bytes.size();
  if (fail_after && *fail_after < end) end = std::max(*fail_after, offset);
  for (uint64_t at = offset; at < end;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_size, end - at));
    if (absl::Status s = sink(std::string_view(bytes).substr(at, n)); !s.ok()) return s;
    at += n;
  }
  if (end < bytes.size()) {
    return absl::UnavailableError(absl::StrCat("connection reset after byte ", end));
  }
  return absl::OkStatus();
}

absl::Status FakeDeviceTransport::ReportEvents(const v1::ReportEventRequest& request) {
  std::lock_guard lock(mu_);
  ++calls_;
  if (report_failing_) return absl::UnavailableError("server unreachable");
  events_.insert(events_.end(), request.events().begin(), request.events().end());
  return absl::OkStatus();
}

void FakeDeviceTransport::SetTelemetryAnswer(TelemetryAnswer answer) {
  std::lock_guard lock(mu_);
  telemetry_answer_ = answer;
}

void FakeDeviceTransport::RefuseTelemetrySequences(std::set<uint64_t> sequences) {
  std::lock_guard lock(mu_);
  refused_sequences_ = std::move(sequences);
}

absl::StatusOr<v1::UploadTelemetryResponse> FakeDeviceTransport::UploadTelemetry(
    const v1::UploadTelemetryRequest& request) {
  std::lock_guard lock(mu_);
  ++calls_;
  if (telemetry_answer_ == TelemetryAnswer::kUnavailable) {
    return absl::UnavailableError("server unreachable");
  }
  telemetry_.push_back(request);
  if (telemetry_answer_ == TelemetryAnswer::kLoseAnswer) {
    return absl::DeadlineExceededError("answer lost");
  }
  v1::UploadTelemetryResponse response;
  for (const auto& w : request.windows()) {
    if (refused_sequences_.count(w.sequence()) > 0) {
      auto* r = response.add_rejected();
      r->set_sequence(w.sequence());
      r->set_reason("refused by the test");
    } else {
      response.add_accepted_sequences(w.sequence());
    }
  }
  return response;
}

}  // namespace edgefleet::fakes
