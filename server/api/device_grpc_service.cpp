#include "server/api/device_grpc_service.h"

#include <grpc/grpc_security_constants.h>

#include "common/core/logging.h"
#include "common/crypto/certificate_authority.h"
#include "server/api/request_limits.h"
#include "server/api/rpc_scope.h"

namespace edgefleet::server {
namespace {

constexpr size_t kChunkBytes = 256 * 1024;

}  // namespace

absl::StatusOr<std::string> DeviceGrpcService::CallerDevice(const grpc::ServerContext& context) {
  auto auth = context.auth_context();
  // gRPC has already verified the chain against the device CA when a certificate is present.
  auto pem = auth ? auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME)
                  : std::vector<grpc::string_ref>{};
  if (pem.empty()) {
    return absl::UnauthenticatedError("a device client certificate is required for this call");
  }
  auto info = crypto::ParseCertificate(std::string(pem.front().data(), pem.front().size()));
  if (!info.ok()) return absl::UnauthenticatedError("unreadable client certificate");
  if (auto s = api_.Authorize(info->common_name, info->serial_hex); !s.ok()) return s;
  return info->common_name;
}

grpc::Status DeviceGrpcService::Enroll(grpc::ServerContext*, const v1::EnrollRequest* request,
                                       v1::EnrollResponse* response) {
  RpcScope scope(metrics_, "DeviceService", "Enroll");
  absl::Status limits = CheckRequestLimits(*request);
  absl::StatusOr<v1::EnrollResponse> result =
      limits.ok() ? enroller_.Enroll(*request) : absl::StatusOr<v1::EnrollResponse>(limits);
  metrics_.enrollments
      .Add({{"result", result.ok() ? "ok" : absl::StatusCodeToString(result.status().code())}})
      .Increment();
  if (!result.ok()) {
    Logger("enrollment")
        ->warn("enrollment refused device={} reason={}", request->device_id(),
               result.status().ToString());
    return scope.Finish(result.status());
  }
  Logger("enrollment")->info("device enrolled device={}", result->device_id());
  *response = *std::move(result);
  return scope.Finish(absl::OkStatus());
}

grpc::Status DeviceGrpcService::CheckIn(grpc::ServerContext* context,
                                        const v1::CheckInRequest* request,
                                        v1::CheckInResponse* response) {
  RpcScope scope(metrics_, "DeviceService", "CheckIn");
  auto device = CallerDevice(*context);
  if (!device.ok()) return scope.Finish(device.status());
  auto result = api_.CheckIn(*device, *request);
  if (!result.ok()) return scope.Finish(result.status());
  *response = *std::move(result);
  return scope.Finish(absl::OkStatus());
}

grpc::Status DeviceGrpcService::FetchArtifact(grpc::ServerContext* context,
                                              const v1::FetchArtifactRequest* request,
                                              grpc::ServerWriter<v1::ArtifactChunk>* writer) {
  RpcScope scope(metrics_, "DeviceService", "FetchArtifact");
  auto device = CallerDevice(*context);
  if (!device.ok()) return scope.Finish(device.status());
  auto stream = api_.OpenArtifact(request->artifact_sha256());
  if (!stream.ok()) return scope.Finish(stream.status());
  auto& reader = stream->reader;
  uint64_t offset = request->offset_bytes();
  const uint64_t first_offset = offset;
  if (offset > reader->size_bytes()) {
    return scope.Finish(absl::OutOfRangeError("offset_bytes is past the end of the artifact"));
  }
  auto& bytes_served = metrics_.artifact_bytes_served.Add({{"kind", stream->kind}});
  while (offset < reader->size_bytes()) {
    if (context->IsCancelled()) return scope.Finish(absl::CancelledError("client went away"));
    auto data = reader->ReadAt(offset, kChunkBytes);
    if (!data.ok()) return scope.Finish(data.status());
    v1::ArtifactChunk chunk;
    chunk.set_offset_bytes(offset);
    chunk.set_total_size_bytes(reader->size_bytes());
    const size_t n = data->size();
    chunk.set_data(*std::move(data));
    if (!writer->Write(chunk)) return scope.Finish(absl::CancelledError("client went away"));
    offset += n;
    bytes_served.Increment(static_cast<double>(n));
  }
  if (std::string_view(stream->kind) == "patch") {
    if (first_offset == 0)
      metrics_.patch_bytes_saved.Add({}).Increment(static_cast<double>(stream->saved_bytes));
    Logger("device")->info(
        "served patch device={} patch_size_bytes={} saved_bytes={} from_offset={}", *device,
        reader->size_bytes(), stream->saved_bytes, first_offset);
  }
  return scope.Finish(absl::OkStatus());
}

grpc::Status DeviceGrpcService::ReportEvent(grpc::ServerContext* context,
                                            const v1::ReportEventRequest* request,
                                            v1::ReportEventResponse*) {
  RpcScope scope(metrics_, "DeviceService", "ReportEvent");
  auto device = CallerDevice(*context);
  if (!device.ok()) return scope.Finish(device.status());
  return scope.Finish(api_.ReportEvent(*device, *request));
}

grpc::Status DeviceGrpcService::UploadTelemetry(grpc::ServerContext* context,
                                                const v1::UploadTelemetryRequest* request,
                                                v1::UploadTelemetryResponse*) {
  RpcScope scope(metrics_, "DeviceService", "UploadTelemetry");
  auto device = CallerDevice(*context);
  if (!device.ok()) return scope.Finish(device.status());
  return scope.Finish(api_.UploadTelemetry(*device, *request));
}

}  // namespace edgefleet::server
