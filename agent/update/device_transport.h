// The agent's seam to the server's device API. The gRPC implementation is used in
// production; tests substitute adversarial fakes (corrupting, truncating, failing servers).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/update/transfer_watchdog.h"
#include "edgefleet/v1/device.pb.h"

namespace edgefleet::agent {

class DeviceTransport {
 public:
  virtual ~DeviceTransport() = default;
  virtual absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) = 0;
  // Streams the artifact from `offset`; `sink` gets each chunk's bytes and may stop the download
  // by returning an error, which FetchArtifact then returns.
  virtual absl::Status FetchArtifact(const std::string& sha256, uint64_t offset,
                                     const std::function<absl::Status(std::string_view)>& sink) = 0;
  virtual absl::Status ReportEvents(const v1::ReportEventRequest& request) = 0;
  // The answer says which windows the server keeps (stored now or before) and which it refused
  // for good; either way the agent is done with them.
  virtual absl::StatusOr<v1::UploadTelemetryResponse> UploadTelemetry(
      const v1::UploadTelemetryRequest& request) = 0;
  // Captured requests (capture.proto); like UploadTelemetry, the answer says which the server
  // keeps and which it refused for good. Transports without it answer Unimplemented.
  virtual absl::StatusOr<v1::UploadCaptureResponse> UploadCapture(const v1::UploadCaptureRequest&) {
    return absl::UnimplementedError("this transport cannot upload captures");
  }
  // A certificate for a new key, asked for with the current one. Transports that cannot renew
  // (test fakes of the update path) answer Unimplemented.
  virtual absl::StatusOr<v1::RenewCertificateResponse> RenewCertificate(
      const v1::RenewCertificateRequest&) {
    return absl::UnimplementedError("this transport cannot renew certificates");
  }
};

struct TlsMaterial {
  std::string ca_certificate_pem;
  std::string client_certificate_pem;  // empty before enrollment
  std::string client_private_key_pem;
};

// Enrollment happens before the device has a certificate, over server-authenticated TLS.
absl::StatusOr<v1::EnrollResponse> EnrollOverGrpc(const std::string& server_address,
                                                  const std::string& ca_certificate_pem,
                                                  const v1::EnrollRequest& request);

// A mutual-TLS gRPC transport to the device API. Artifact downloads slower than `stall` allows
// are cancelled (Unavailable, "download too slow: ...").
std::unique_ptr<DeviceTransport> MakeGrpcDeviceTransport(const std::string& server_address,
                                                         const TlsMaterial& tls,
                                                         StallPolicy stall = {});

}  // namespace edgefleet::agent
