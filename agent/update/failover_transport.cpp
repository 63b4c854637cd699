#include "agent/update/failover_transport.h"

#include <algorithm>
#include <utility>

#include "common/core/logging.h"

namespace edgefleet::agent {
namespace {

const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

}  // namespace

bool IsUnreachable(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status);
}

std::vector<std::string> ServerAddresses(const v1::AgentConfig& config) {
  std::vector<std::string> out;
  auto add = [&out](const std::string& address) {
    if (!address.empty() && std::find(out.begin(), out.end(), address) == out.end()) {
      out.push_back(address);
    }
  };
  add(config.server_address());
  for (const std::string& address : config.server_addresses()) add(address);
  return out;
}

FailoverTransport::FailoverTransport(std::vector<Replica> replicas)
    : replicas_(std::move(replicas)) {}

std::string FailoverTransport::current_address() const {
  std::lock_guard lock(mu_);
  return replicas_[current_].address;
}

template <typename Call>
auto FailoverTransport::OnCurrent(Call&& call) -> decltype(call(std::declval<DeviceTransport&>())) {
  size_t index;
  {
    std::lock_guard lock(mu_);
    index = current_;
  }
  auto result = call(*replicas_[index].transport);
  if (!result.ok() && IsUnreachable(StatusOf(result))) MoveOn(index, StatusOf(result));
  return result;
}

void FailoverTransport::MoveOn(size_t index, const absl::Status& status) {
  std::lock_guard lock(mu_);
  if (current_ != index || replicas_.size() < 2) return;
  current_ = (index + 1) % replicas_.size();
  Logger("agent")->warn("server unreachable address={} error={}; next calls go to address={}",
                        replicas_[index].address, status.ToString(), replicas_[current_].address);
}

absl::StatusOr<v1::CheckInResponse> FailoverTransport::CheckIn(const v1::CheckInRequest& request) {
  return OnCurrent([&](DeviceTransport& t) { return t.CheckIn(request); });
}

absl::Status FailoverTransport::FetchArtifact(
    const std::string& sha256, uint64_t offset,
    const std::function<absl::Status(std::string_view)>& sink) {
  // The sink's own refusal (a digest mismatch, a full disk) is not the server's absence.
  absl::Status refused;
  absl::Status fetched = OnCurrent([&](DeviceTransport& t) {
    absl::Status s = t.FetchArtifact(sha256, offset, [&](std::string_view data) {
      refused = sink(data);
      return refused;
    });
    return refused.ok() ? s : absl::OkStatus();
  });
  return refused.ok() ? fetched : refused;
}

absl::Status FailoverTransport::ReportEvents(const v1::ReportEventRequest& request) {
  return OnCurrent([&](DeviceTransport& t) { return t.ReportEvents(request); });
}

absl::StatusOr<v1::UploadTelemetryResponse> FailoverTransport::UploadTelemetry(
    const v1::UploadTelemetryRequest& request) {
  return OnCurrent([&](DeviceTransport& t) { return t.UploadTelemetry(request); });
}

absl::StatusOr<v1::UploadCaptureResponse> FailoverTransport::UploadCapture(
    const v1::UploadCaptureRequest& request) {
  return OnCurrent([&](DeviceTransport& t) { return t.UploadCapture(request); });
}

absl::StatusOr<v1::RenewCertificateResponse> FailoverTransport::RenewCertificate(
    const v1::RenewCertificateRequest& request) {
  return OnCurrent([&](DeviceTransport& t) { return t.RenewCertificate(request); });
}

}  // namespace edgefleet::agent
