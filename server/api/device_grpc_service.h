// gRPC face of the device API. Every call but Enroll must come over mutual TLS with a
// certificate from the device CA; its common name is the device id.
#pragma once

#include "edgefleet/v1/device.grpc.pb.h"
#include "server/api/client_identity_cache.h"
#include "server/api/device_api.h"
#include "server/enrollment/enroller.h"

namespace edgefleet::server {

// What a device is told about a failed call: its own business (bad input, no permission, an
// unknown digest, token problems) as it is; server trouble only as UNAVAILABLE "server
// temporarily unavailable" or INTERNAL "internal error", so that SQL, row content or the
// database's address never reach a device. The real error is logged with `method`.
absl::Status ForDevice(const absl::Status& status, std::string_view method);

class DeviceGrpcService final : public v1::DeviceService::Service {
 public:
  DeviceGrpcService(DeviceApi& api, Enroller& enroller, ServerMetrics& metrics)
      : api_(api), enroller_(enroller), metrics_(metrics) {}

  grpc::Status Enroll(grpc::ServerContext*, const v1::EnrollRequest*, v1::EnrollResponse*) override;
  grpc::Status CheckIn(grpc::ServerContext*, const v1::CheckInRequest*,
                       v1::CheckInResponse*) override;
  grpc::Status FetchArtifact(grpc::ServerContext*, const v1::FetchArtifactRequest*,
                             grpc::ServerWriter<v1::ArtifactChunk>*) override;
  grpc::Status ReportEvent(grpc::ServerContext*, const v1::ReportEventRequest*,
                           v1::ReportEventResponse*) override;
  grpc::Status UploadTelemetry(grpc::ServerContext*, const v1::UploadTelemetryRequest*,
                               v1::UploadTelemetryResponse*) override;
  grpc::Status UploadCapture(grpc::ServerContext*, const v1::UploadCaptureRequest*,
                             v1::UploadCaptureResponse*) override;
  grpc::Status RenewCertificate(grpc::ServerContext*, const v1::RenewCertificateRequest*,
                                v1::RenewCertificateResponse*) override;

 private:
  // What the caller's client certificate says (mTLS verified it against the device CA).
  absl::StatusOr<ClientIdentityCache::Identity> CallerCertificate(
      const grpc::ServerContext& context);
  // The authenticated device id of the caller, or Unauthenticated / PermissionDenied.
  absl::StatusOr<std::string> CallerDevice(const grpc::ServerContext& context);

  DeviceApi& api_;
  Enroller& enroller_;
  ServerMetrics& metrics_;
  ClientIdentityCache identities_;
};

}  // namespace edgefleet::server
