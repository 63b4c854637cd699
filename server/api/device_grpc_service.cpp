#include "server/api/device_grpc_service.h"

#include <grpc/grpc_security_constants.h>

#include <algorithm>

#include "common/core/limits.h"
#include "common/core/logging.h"
#include "server/api/request_limits.h"
#include "server/api/rpc_scope.h"

namespace edgefleet::server {
namespace {

// Finishes a device call with what the device may be told.
class DeviceRpcScope {
 public:
  DeviceRpcScope(ServerMetrics& metrics, const char* method)
      : scope_(metrics, "DeviceService", method), method_(method) {}
  grpc::Status Finish(const absl::Status& status) {
    return scope_.Finish(ForDevice(status, method_));
  }

 private:
  RpcScope scope_;
  const char* method_;
};

}  // namespace

absl::Status ForDevice(const absl::Status& status, std::string_view method) {
  if (status.ok()) return status;
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
      Logger("device")->warn("{} failed: {}", method, EscapeForLog(status.ToString()));
      return absl::UnavailableError("server temporarily unavailable");
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnimplemented:
      Logger("device")->error("{} failed: {}", method, EscapeForLog(status.ToString()));
      return absl::InternalError("internal error");
    default:
      break;
  }
  if (IsStoreError(status)) {
    // A constraint the request broke in the database: the device's fault, but the database's
    // wording quotes rows.
    Logger("device")->warn("{} refused by the database: {}", method,
                           EscapeForLog(status.ToString()));
    if (status.code() == absl::StatusCode::kInvalidArgument) {
      return absl::InvalidArgumentError("the request holds data the server cannot store");
    }
    return absl::InternalError("internal error");
  }
  return status;
}

absl::StatusOr<ClientIdentityCache::Identity> DeviceGrpcService::CallerCertificate(
    const grpc::ServerContext& context) {
  auto auth = context.auth_context();
  // gRPC has already verified the chain against the device CA when a certificate is present.
  auto pem = auth ? auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME)
                  : std::vector<grpc::string_ref>{};
  if (pem.empty()) {
    return absl::UnauthenticatedError("a device client certificate is required for this call");
  }
  auto identity = identities_.Get(std::string_view(pem.front().data(), pem.front().size()));
  if (!identity.ok()) return absl::UnauthenticatedError("unreadable client certificate");
  return identity;
}

absl::StatusOr<std::string> DeviceGrpcService::CallerDevice(const grpc::ServerContext& context) {
  auto identity = CallerCertificate(context);
  if (!identity.ok()) return identity.status();
  if (auto s = api_.Authorize(identity->common_name, identity->serial_hex); !s.ok()) return s;
  return identity->common_name;
}

grpc::Status DeviceGrpcService::Enroll(grpc::ServerContext*, const v1::EnrollRequest* request,
                                       v1::EnrollResponse* response) {
  DeviceRpcScope scope(metrics_, "Enroll");
  absl::Status limits = CheckRequestLimits(*request);
  absl::StatusOr<v1::EnrollResponse> result =
      limits.ok() ? enroller_.Enroll(*request) : absl::StatusOr<v1::EnrollResponse>(limits);
  metrics_.enrollments
      .Add({{"result", result.ok() ? "ok" : absl::StatusCodeToString(result.status().code())}})
      .Increment();
  if (!result.ok()) {
    Logger("enrollment")
        ->warn("enrollment refused device={} reason={}", EscapeForLog(request->device_id()),
               EscapeForLog(result.status().ToString()));
    return scope.Finish(result.status());
  }
  Logger("enrollment")->info("device enrolled device={}", result->device_id());
  *response = *std::move(result);
  return scope.Finish(absl::OkStatus());
}

grpc::Status DeviceGrpcService::CheckIn(grpc::ServerContext* context,
                                        const v1::CheckInRequest* request,
                                        v1::CheckInResponse* response) {
  DeviceRpcScope scope(metrics_, "CheckIn");
  // Authorized within the check-in's own statement (DeviceApi::CheckIn).
  auto caller = CallerCertificate(*context);
  if (!caller.ok()) return scope.Finish(caller.status());
  auto result = api_.CheckIn(caller->common_name, caller->serial_hex, *request);
  if (!result.ok()) return scope.Finish(result.status());
  *response = *std::move(result);
  return scope.Finish(absl::OkStatus());
}

grpc::Status DeviceGrpcService::FetchArtifact(grpc::ServerContext* context,
                                              const v1::FetchArtifactRequest* request,
                                              grpc::ServerWriter<v1::ArtifactChunk>* writer) {
  DeviceRpcScope scope(metrics_, "FetchArtifact");
  auto device = CallerDevice(*context);
  if (!device.ok()) return scope.Finish(device.status());
  auto stream = api_.OpenArtifact(*device, request->artifact_sha256());
  if (!stream.ok()) return scope.Finish(stream.status());
  auto& reader = stream->reader;
  uint64_t offset = request->offset_bytes();
  const uint64_t first_offset = offset;
  if (offset > reader->size_bytes()) {
    return scope.Finish(absl::OutOfRangeError("offset_bytes is past the end of the artifact"));
  }
  const size_t chunk_bytes =
      request->max_chunk_bytes() == 0
          ? RequestLimits::kMaxArtifactChunkBytes
          : std::clamp<size_t>(request->max_chunk_bytes(), RequestLimits::kMinArtifactChunkBytes,
                               RequestLimits::kMaxArtifactChunkBytes);
  auto& bytes_served = metrics_.artifact_bytes_served.Add({{"kind", stream->kind}});
  metrics_.artifact_fetches
      .Add({{"kind", stream->kind}, {"from", offset == 0 ? "start" : "resume"}})
      .Increment();
  while (offset < reader->size_bytes()) {
    if (context->IsCancelled()) return scope.Finish(absl::CancelledError("client went away"));
    auto data = reader->ReadAt(offset, chunk_bytes);
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
  DeviceRpcScope scope(metrics_, "ReportEvent");
  auto device = CallerDevice(*context);
  if (!device.ok()) return scope.Finish(device.status());
  return scope.Finish(api_.ReportEvent(*device, *request));
}

grpc::Status DeviceGrpcService::UploadTelemetry(grpc::ServerContext* context,
                                                const v1::UploadTelemetryRequest* request,
                                                v1::UploadTelemetryResponse* response) {
  DeviceRpcScope scope(metrics_, "UploadTelemetry");
  auto device = CallerDevice(*context);
  if (!device.ok()) return scope.Finish(device.status());
  auto answer = api_.UploadTelemetry(*device, *request);
  if (!answer.ok()) return scope.Finish(answer.status());
  *response = *std::move(answer);
  return scope.Finish(absl::OkStatus());
}

grpc::Status DeviceGrpcService::UploadCapture(grpc::ServerContext* context,
                                              const v1::UploadCaptureRequest* request,
                                              v1::UploadCaptureResponse* response) {
  DeviceRpcScope scope(metrics_, "UploadCapture");
  auto device = CallerDevice(*context);
  if (!device.ok()) return scope.Finish(device.status());
  auto answer = api_.UploadCapture(*device, *request);
  if (!answer.ok()) return scope.Finish(answer.status());
  *response = *std::move(answer);
  return scope.Finish(absl::OkStatus());
}

grpc::Status DeviceGrpcService::RenewCertificate(grpc::ServerContext* context,
                                                 const v1::RenewCertificateRequest* request,
                                                 v1::RenewCertificateResponse* response) {
  DeviceRpcScope scope(metrics_, "RenewCertificate");
  auto device = CallerDevice(*context);
  if (!device.ok()) return scope.Finish(device.status());
  auto result = enroller_.Renew(*device, request->csr_pem());
  if (!result.ok()) return scope.Finish(result.status());
  Logger("enrollment")
      ->info("certificate renewed device={} not_after={}", *device, result->not_after().seconds());
  *response = *std::move(result);
  return scope.Finish(absl::OkStatus());
}

}  // namespace edgefleet::server
