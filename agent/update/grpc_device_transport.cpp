#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "agent/update/device_transport.h"
#include "agent/update/transfer_watchdog.h"
#include "edgefleet/v1/device.grpc.pb.h"

namespace edgefleet::agent {
namespace {

constexpr auto kUnaryTimeout = std::chrono::seconds(30);
// A whole-artifact deadline would cut large downloads on slow links; the stall watchdog cuts a
// trickle, and resumption continues either.
constexpr auto kFetchTimeout = std::chrono::minutes(30);

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

void SetDeadline(grpc::ClientContext* context, std::chrono::seconds timeout) {
  context->set_deadline(std::chrono::system_clock::now() + timeout);
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, const TlsMaterial& tls) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = tls.ca_certificate_pem;
  options.pem_cert_chain = tls.client_certificate_pem;
  options.pem_private_key = tls.client_private_key_pem;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 << 20);
  // Reconnect quickly after the server comes back; our own backoff paces check-ins.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(options), args);
}

class GrpcDeviceTransport final : public DeviceTransport {
 public:
  GrpcDeviceTransport(const std::string& address, const TlsMaterial& tls, StallPolicy stall)
      : stub_(v1::DeviceService::NewStub(MakeChannel(address, tls))), stall_(stall) {}

  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) override {
    grpc::ClientContext context;
    SetDeadline(&context, kUnaryTimeout);
    v1::CheckInResponse response;
    if (auto s = FromGrpc(stub_->CheckIn(&context, request, &response)); !s.ok()) return s;
    return response;
  }

  absl::Status FetchArtifact(const std::string& sha256, uint64_t offset,
                             const std::function<absl::Status(std::string_view)>& sink) override {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kFetchTimeout);
    v1::FetchArtifactRequest request;
    request.set_artifact_sha256(sha256);
    request.set_offset_bytes(offset);
    request.set_max_chunk_bytes(stall_.ChunkBytes());
    auto reader = stub_->FetchArtifact(&context, request);
    TransferWatchdog watchdog(stall_, [&context] { context.TryCancel(); });
    v1::ArtifactChunk chunk;
    uint64_t expected_offset = offset;
    while (reader->Read(&chunk)) {
      watchdog.Received(chunk.ByteSizeLong());
      if (chunk.offset_bytes() != expected_offset) {
        context.TryCancel();
        reader->Finish();
        return absl::DataLossError("server sent an artifact chunk out of order");
      }
      if (auto s = sink(chunk.data()); !s.ok()) {
        context.TryCancel();
        reader->Finish();
        return s;
      }
      expected_offset += chunk.data().size();
    }
    absl::Status finished = FromGrpc(reader->Finish());
    if (watchdog.Fired()) return absl::UnavailableError(watchdog.Reason());
    return finished;
  }

  absl::Status ReportEvents(const v1::ReportEventRequest& request) override {
    grpc::ClientContext context;
    SetDeadline(&context, kUnaryTimeout);
    v1::ReportEventResponse response;
    return FromGrpc(stub_->ReportEvent(&context, request, &response));
  }

  absl::StatusOr<v1::UploadTelemetryResponse> UploadTelemetry(
      const v1::UploadTelemetryRequest& request) override {
    return Unary<v1::UploadTelemetryResponse>(&Stub::UploadTelemetry, request);
  }

  absl::StatusOr<v1::UploadCaptureResponse> UploadCapture(
      const v1::UploadCaptureRequest& request) override {
    return Unary<v1::UploadCaptureResponse>(&Stub::UploadCapture, request);
  }

  absl::StatusOr<v1::RenewCertificateResponse> RenewCertificate(
      const v1::RenewCertificateRequest& request) override {
    return Unary<v1::RenewCertificateResponse>(&Stub::RenewCertificate, request);
  }

 private:
  using Stub = v1::DeviceService::Stub;

  // One unary call with the unary deadline.
  template <typename Response, typename Request, typename Method>
  absl::StatusOr<Response> Unary(Method method, const Request& request) {
    grpc::ClientContext context;
    SetDeadline(&context, kUnaryTimeout);
    Response response;
    if (auto s = FromGrpc(((*stub_).*method)(&context, request, &response)); !s.ok()) return s;
    return response;
  }

  std::unique_ptr<v1::DeviceService::Stub> stub_;
  const StallPolicy stall_;
};

}  // namespace

absl::StatusOr<v1::EnrollResponse> EnrollOverGrpc(const std::string& server_address,
                                                  const std::string& ca_certificate_pem,
                                                  const v1::EnrollRequest& request) {
  auto stub = v1::DeviceService::NewStub(
      MakeChannel(server_address, TlsMaterial{ca_certificate_pem, "", ""}));
  grpc::ClientContext context;
  SetDeadline(&context, kUnaryTimeout);
  v1::EnrollResponse response;
  if (auto s = FromGrpc(stub->Enroll(&context, request, &response)); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("enroll with ", server_address, ": ", s.message()));
  }
  return response;
}

std::unique_ptr<DeviceTransport> MakeGrpcDeviceTransport(const std::string& server_address,
                                                         const TlsMaterial& tls,
                                                         StallPolicy stall) {
  return std::make_unique<GrpcDeviceTransport>(server_address, tls, stall);
}

}  // namespace edgefleet::agent
