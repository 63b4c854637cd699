// Several server replicas behind one DeviceTransport. Calls go to one address at a time; a call
// that finds the server unreachable (UNAVAILABLE, DEADLINE_EXCEEDED) sends the next call to the
// next address, and the transport stays with an address that answers. The failed call's error
// is returned as it was, so the agent's own backoff paces the retries, and a download resumes
// from its partial bytes on whichever replica the next attempt reaches (replicas share the
// artifact store, so an artifact is the same bytes on each).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/update/device_transport.h"
#include "edgefleet/v1/config.pb.h"

namespace edgefleet::agent {

// Whether `status` says the server could not be reached or did not answer in time, so that
// another replica may.
bool IsUnreachable(const absl::Status& status);

// The device API addresses a config names: server_address, then server_addresses, in order,
// without empty entries or repeats.
std::vector<std::string> ServerAddresses(const v1::AgentConfig& config);

class FailoverTransport final : public DeviceTransport {
 public:
  struct Replica {
    std::string address;
    std::unique_ptr<DeviceTransport> transport;
  };
  // `replicas` is not empty; the first is tried first.
  explicit FailoverTransport(std::vector<Replica> replicas);

  // The address the next call goes to.
  std::string current_address() const;

  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) override;
  absl::Status FetchArtifact(const std::string& sha256, uint64_t offset,
                             const std::function<absl::Status(std::string_view)>& sink) override;
  absl::Status ReportEvents(const v1::ReportEventRequest& request) override;
  absl::StatusOr<v1::UploadTelemetryResponse> UploadTelemetry(
      const v1::UploadTelemetryRequest& request) override;
  absl::StatusOr<v1::UploadCaptureResponse> UploadCapture(
      const v1::UploadCaptureRequest& request) override;
  absl::StatusOr<v1::RenewCertificateResponse> RenewCertificate(
      const v1::RenewCertificateRequest& request) override;

 private:
  // Runs `call` on the current replica; an unreachable answer moves on to the next one.
  template <typename Call>
  auto OnCurrent(Call&& call) -> decltype(call(std::declval<DeviceTransport&>()));
  // The replica at `index` was unreachable: the next call goes to the one after it (unless a
  // concurrent call moved on already).
  void MoveOn(size_t index, const absl::Status& status);

  std::vector<Replica> replicas_;
  mutable std::mutex mu_;
  size_t current_ = 0;
};

// Calls `call` with each address in turn, from the first, until one is reachable; its answer,
// or the last address's error when none is. For calls made before a transport exists
// (enrollment).
template <typename T>
absl::StatusOr<T> OnFirstReachable(
    const std::vector<std::string>& addresses,
    const std::function<absl::StatusOr<T>(const std::string& address)>& call) {
  absl::StatusOr<T> result = absl::FailedPreconditionError("no server address configured");
  for (const std::string& address : addresses) {
    result = call(address);
    if (result.ok() || !IsUnreachable(result.status())) return result;
  }
  return result;
}

}  // namespace edgefleet::agent
