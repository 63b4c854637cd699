#include "server/api/admin_grpc_service.h"

#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/impl/rpc_service_method.h>
#include <grpcpp/support/method_handler.h>

#include "absl/strings/str_cat.h"
#include "server/api/rpc_scope.h"

namespace edgefleet::server {
namespace {

using google::protobuf::Message;
using MessageTraits = grpc::SerializationTraits<Message>;

constexpr char kServiceName[] = "edgefleet.v1.AdminService";

std::string AuthorizationHeader(const grpc::ServerContext& context) {
  auto it = context.client_metadata().find("authorization");
  if (it == context.client_metadata().end()) return "";
  return std::string(it->second.data(), it->second.size());
}

}  // namespace

AdminGrpcService::AdminGrpcService(AdminApi& api, const Authenticator& auth, ServerMetrics& metrics)
    : api_(api), dispatcher_(api, auth), metrics_(metrics) {
  for (const AdminCall& call : AdminCalls()) {
    const std::string& path =
        paths_.emplace_back(absl::StrCat("/", kServiceName, "/", std::string(call.rpc)));
    if (call.handler == nullptr) {
      // The one streaming call; a new streaming RPC needs its own handler here.
      AddMethod(new grpc::internal::RpcServiceMethod(
          path.c_str(), grpc::internal::RpcMethod::CLIENT_STREAMING,
          new grpc::internal::ClientStreamingHandler<AdminGrpcService, v1::PushModelRequest,
                                                     v1::ModelVersion>(
              [](AdminGrpcService* self, grpc::ServerContext* context,
                 grpc::ServerReader<v1::PushModelRequest>* reader,
                 v1::ModelVersion* response) { return self->PushModel(context, reader, response); },
              this)));
      continue;
    }
    // Requests and responses travel as bytes; the table entry knows their message types.
    AddMethod(new grpc::internal::RpcServiceMethod(
        path.c_str(), grpc::internal::RpcMethod::NORMAL_RPC,
        new grpc::internal::RpcMethodHandler<AdminGrpcService, grpc::ByteBuffer, grpc::ByteBuffer>(
            [&call](AdminGrpcService* self, grpc::ServerContext* context,
                    const grpc::ByteBuffer* request, grpc::ByteBuffer* response) {
              return self->Unary(call, context, *request, response);
            },
            this)));
  }
}

grpc::Status AdminGrpcService::Unary(const AdminCall& call, grpc::ServerContext* context,
                                     const grpc::ByteBuffer& request, grpc::ByteBuffer* response) {
  RpcScope scope(metrics_, "AdminService", std::string(call.rpc));
  auto principal = dispatcher_.Admit(call, AuthorizationHeader(*context));
  if (!principal.ok()) return scope.Finish(principal.status());
  std::unique_ptr<Message> parsed(call.request_prototype->New());
  grpc::ByteBuffer copy(request);
  if (grpc::Status s = MessageTraits::Deserialize(&copy, parsed.get()); !s.ok()) {
    return scope.Finish(absl::InvalidArgumentError(absl::StrCat(
        "cannot parse ", parsed->GetDescriptor()->full_name(), ": ", s.error_message())));
  }
  auto result = dispatcher_.Run(call, *principal, *parsed);
  if (!result.ok()) return scope.Finish(result.status());
  bool own_buffer = false;
  if (grpc::Status s = MessageTraits::Serialize(**result, response, &own_buffer); !s.ok()) {
    return scope.Finish(
        absl::InternalError(absl::StrCat("cannot serialize the response: ", s.error_message())));
  }
  return scope.Finish(absl::OkStatus());
}

template <typename Response, typename Call>
grpc::Status AdminGrpcService::Handle(grpc::ServerContext* context, const char* method,
                                      Response* response, Call call) {
  RpcScope scope(metrics_, "AdminService", method);
  const AdminCall* entry = FindAdminCall(method);
  if (entry == nullptr) {
    return scope.Finish(absl::InternalError(absl::StrCat(method, " has no admin call entry")));
  }
  auto principal = dispatcher_.Admit(*entry, AuthorizationHeader(*context));
  if (!principal.ok()) return scope.Finish(principal.status());
  auto result = call(*principal);
  if (!result.ok()) return scope.Finish(result.status());
  *response = *std::move(result);
  return scope.Finish(absl::OkStatus());
}

grpc::Status AdminGrpcService::PushModel(grpc::ServerContext* context,
                                         grpc::ServerReader<v1::PushModelRequest>* reader,
                                         v1::ModelVersion* response) {
  return Handle(
      context, "PushModel", response,
      [&](const Principal& who) -> absl::StatusOr<v1::ModelVersion> {
        v1::PushModelRequest first;
        if (!reader->Read(&first) || !first.has_metadata()) {
          return absl::InvalidArgumentError("the first PushModel message must carry metadata");
        }
        auto upload = api_.BeginPush(who, first.metadata());
        if (!upload.ok()) return upload.status();
        // The upload counts only when the client ends it with a finish message and then closes
        // its side: a stream that breaks off or is cancelled also ends Read(), without one.
        v1::PushModelRequest next;
        bool finished = false;
        while (reader->Read(&next)) {
          if (finished) return absl::InvalidArgumentError("nothing may follow the finish message");
          if (next.has_chunk()) {
            if (auto s = (*upload)->Append(next.chunk()); !s.ok()) return s;
          } else if (next.has_finish()) {
            finished = true;
            if (auto s = (*upload)->DeclareEnd(next.finish().size_bytes(), next.finish().sha256());
                !s.ok()) {
              return s;
            }
          } else {
            return absl::InvalidArgumentError("metadata may only be sent once");
          }
        }
        if (context->IsCancelled()) {
          return absl::CancelledError("the upload was cancelled; nothing was registered");
        }
        if (!finished) {
          return absl::InvalidArgumentError(
              "the upload ended without its finish message; nothing was registered");
        }
        return api_.FinishPush(*std::move(upload));
      });
}

}  // namespace edgefleet::server
