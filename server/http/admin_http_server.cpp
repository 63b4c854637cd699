#include "server/http/admin_http_server.h"

#include <google/protobuf/util/json_util.h>
#include <httplib.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/core/logging.h"
#include "common/crypto/sha256.h"
#include "common/tensor_spec/tensor_spec.h"
#include "edgefleet/v1/admin.pb.h"

namespace edgefleet::server {
namespace {

using google::protobuf::Message;

constexpr char kJson[] = "application/json";

void WriteError(httplib::Response& res, const absl::Status& status) {
  v1::ErrorBody body;
  body.set_code(absl::StatusCodeToString(status.code()));
  body.set_message(std::string(status.message()));
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(body, &json);
  res.status = HttpStatusFor(status.code());
  res.set_content(json, kJson);
}

void WriteMessage(httplib::Response& res, const Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  res.status = 200;
  res.set_content(json, kJson);
}

absl::Status ParseBody(const httplib::Request& req, Message* message) {
  if (req.body.empty()) return absl::OkStatus();
  auto status = google::protobuf::util::JsonStringToMessage(req.body, message);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("request body is not a valid ",
                                                   message->GetDescriptor()->name(),
                                                   " JSON: ", status.message().ToString()));
  }
  return absl::OkStatus();
}

}  // namespace

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

AdminHttpServer::AdminHttpServer(AdminApi& api, const Authenticator& auth,
                                 metrics::Registry& registry, ServerMetrics& metrics,
                                 std::function<absl::Status()> ready)
    : api_(api),
      auth_(auth),
      registry_(registry),
      metrics_(metrics),
      ready_(std::move(ready)),
      http_(std::make_unique<httplib::Server>()) {
  RegisterRoutes();
}

AdminHttpServer::~AdminHttpServer() { Stop(); }

void AdminHttpServer::RegisterRoutes() {
  httplib::Server& http = *http_;

  // Wraps a REST handler: authenticates, authorizes, maps errors to JSON bodies.
  // The caller's principal, allowed to read (or, if `mutating`, to change) state.
  auto authorize = [this](const httplib::Request& req, bool mutating) -> absl::StatusOr<Principal> {
    auto principal = auth_.Authenticate(req.get_header_value("Authorization"));
    if (!principal.ok()) return principal.status();
    if (absl::Status s = Authenticator::Authorize(*principal, mutating); !s.ok()) return s;
    return principal;
  };
  auto api = [authorize](bool mutating, auto handler) {
    return [authorize, mutating, handler](const httplib::Request& req, httplib::Response& res) {
      auto principal = authorize(req, mutating);
      absl::Status status = principal.status();
      if (status.ok()) status = handler(*principal, req, res);
      if (!status.ok()) WriteError(res, status);
    };
  };
  // Adapts an AdminApi call returning StatusOr<Message> to a REST handler.
  auto respond = [](httplib::Response& res, const auto& result) -> absl::Status {
    if (!result.ok()) return result.status();
    WriteMessage(res, *result);
    return absl::OkStatus();
  };

  http.Post("/v1/enrollment-tokens",
            api(true, [this, respond](const Principal& who, const httplib::Request& req,
                                      httplib::Response& res) {
              v1::CreateEnrollmentTokenRequest request;
              if (auto s = ParseBody(req, &request); !s.ok()) return s;
              return respond(res, api_.CreateEnrollmentToken(who, request));
            }));
  http.Get("/v1/devices", api(false, [this, respond](const Principal&, const httplib::Request& req,
                                                     httplib::Response& res) {
             v1::ListDevicesRequest request;
             request.set_label_selector(req.get_param_value("label_selector"));
             return respond(res, api_.ListDevices(request));
           }));
  http.Get(R"(/v1/devices/([^/]+))",
           api(false, [this, respond](const Principal&, const httplib::Request& req,
                                      httplib::Response& res) {
             v1::GetDeviceRequest request;
             request.set_device_id(req.matches[1]);
             return respond(res, api_.GetDevice(request));
           }));
  http.Post(R"(/v1/devices/([^/]+)/labels)",
            api(true, [this, respond](const Principal& who, const httplib::Request& req,
                                      httplib::Response& res) {
              v1::LabelDeviceRequest request;
              if (auto s = ParseBody(req, &request); !s.ok()) return s;
              request.set_device_id(req.matches[1]);
              return respond(res, api_.LabelDevice(who, request));
            }));
  http.Post(R"(/v1/devices/([^/]+)/decommission)",
            api(true, [this, respond](const Principal& who, const httplib::Request& req,
                                      httplib::Response& res) {
              v1::DecommissionDeviceRequest request;
              request.set_device_id(req.matches[1]);
              return respond(res, api_.DecommissionDevice(who, request));
            }));
  http.Post(R"(/v1/devices/([^/]+)/rekey)",
            api(true, [this, respond](const Principal& who, const httplib::Request& req,
                                      httplib::Response& res) {
              v1::RekeyDeviceRequest request;
              if (auto s = ParseBody(req, &request); !s.ok()) return s;
              request.set_device_id(req.matches[1]);
              return respond(res, api_.RekeyDevice(who, request));
            }));
  http.Get("/v1/models", api(false, [this, respond](const Principal&, const httplib::Request&,
                                                    httplib::Response& res) {
             return respond(res, api_.ListModels(v1::ListModelsRequest()));
           }));
  http.Get(R"(/v1/models/([^/]+))",
           api(false, [this, respond](const Principal&, const httplib::Request& req,
                                      httplib::Response& res) {
             v1::GetModelRequest request;
             request.set_model_name(req.matches[1]);
             return respond(res, api_.GetModel(request));
           }));
  // Upload: the body is the raw model file; metadata rides in the path and query string
  // (?input=NAME:1x4&output=NAME:1x3&sha256=HEX&size=BYTES&label=k=v). The version is registered
  // only when the whole body arrived (Content-Length reached, or the last chunk of a chunked
  // body); a body over the size limit is refused with 413 before it is read.
  http.Post(R"(/v1/models/([^/]+)/versions/([^/]+))", [this, authorize](
                                                          const httplib::Request& req,
                                                          httplib::Response& res,
                                                          const httplib::ContentReader& content) {
    auto principal = authorize(req, true);
    absl::Status status = principal.status();
    v1::PushModelMetadata metadata;
    metadata.set_model_name(req.matches[1]);
    metadata.set_version(req.matches[2]);
    metadata.set_format(v1::MODEL_FORMAT_ONNX);
    for (const char* param : {"input", "output"}) {
      for (size_t i = 0; status.ok() && i < req.get_param_value_count(param); ++i) {
        auto spec = ParseTensorSpec(req.get_param_value(param, i));
        if (!spec.ok()) {
          status = spec.status();
        } else {
          *(std::string(param) == "input" ? metadata.add_inputs() : metadata.add_outputs()) = *spec;
        }
      }
    }
    if (status.ok() && req.has_param("sha256")) {
      auto raw = crypto::FromHex(req.get_param_value("sha256"));
      if (raw.ok()) {
        metadata.set_expected_sha256(*raw);
      } else {
        status = absl::InvalidArgumentError("sha256 must be 64 hex characters");
      }
    }
    // Without a length or chunked framing, the end of the body cannot be told from a
    // dropped connection.
    const bool chunked = req.get_header_value("Transfer-Encoding") == "chunked";
    const bool has_length = req.has_header("Content-Length");
    uint64_t content_length = 0;
    if (status.ok() && has_length &&
        !absl::SimpleAtoi(req.get_header_value("Content-Length"), &content_length)) {
      status = absl::InvalidArgumentError("Content-Length is not a number");
    }
    if (status.ok() && req.has_param("size")) {
      uint64_t size = 0;
      if (!absl::SimpleAtoi(req.get_param_value("size"), &size) || size == 0) {
        status = absl::InvalidArgumentError("size must be a positive number of bytes");
      } else if (has_length && size != content_length) {
        status = absl::InvalidArgumentError(
            absl::StrCat("size=", size, " differs from the Content-Length of ", content_length));
      }
      metadata.set_expected_size_bytes(size);
    } else if (status.ok() && has_length) {
      metadata.set_expected_size_bytes(content_length);
    }
    if (!status.ok()) {
      WriteError(res, status);
      return;
    }
    if (!chunked && !has_length) {
      WriteError(res,
                 absl::InvalidArgumentError("an upload needs a Content-Length or a chunked body"));
      res.status = 411;
      return;
    }
    // The upload exists only from here on; returning early drops it (and its bytes).
    auto upload = api_.BeginPush(*principal, metadata);
    if (!upload.ok()) {
      WriteError(res, upload.status());
      // Over the size limit: 413, answered before the body is read.
      if (upload.status().code() == absl::StatusCode::kResourceExhausted) {
        res.status = 413;
      }
      return;
    }
    // The body streams into the artifact store as httplib reads it; httplib reports a
    // body that ends before Content-Length (or before its last chunk) as false.
    absl::Status appended;
    const bool complete = content([&](const char* data, size_t length) {
      appended = (*upload)->Append(std::string_view(data, length));
      return appended.ok();
    });
    if (!appended.ok()) {
      WriteError(res, appended);
      if (appended.code() == absl::StatusCode::kResourceExhausted) res.status = 413;
      return;
    }
    if (!complete) {
      WriteError(
          res, absl::InvalidArgumentError("the upload ended before its whole body arrived; nothing "
                                          "was registered"));
      return;
    }
    auto version = api_.FinishPush(*std::move(upload));
    if (!version.ok()) {
      WriteError(res, version.status());
      return;
    }
    WriteMessage(res, *version);
  });
  http.Post("/v1/deployments",
            api(true, [this, respond](const Principal& who, const httplib::Request& req,
                                      httplib::Response& res) {
              v1::CreateDeploymentRequest request;
              if (auto s = ParseBody(req, &request); !s.ok()) return s;
              return respond(res, api_.CreateDeployment(who, request));
            }));
  http.Get("/v1/deployments", api(false, [this, respond](const Principal&, const httplib::Request&,
                                                         httplib::Response& res) {
             return respond(res, api_.ListDeployments(v1::ListDeploymentsRequest()));
           }));
  http.Get(R"(/v1/deployments/([^/]+))",
           api(false, [this, respond](const Principal&, const httplib::Request& req,
                                      httplib::Response& res) {
             v1::GetDeploymentRequest request;
             request.set_deployment_id(req.matches[1]);
             return respond(res, api_.GetDeployment(request));
           }));

  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry_.Serialize(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  http.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    absl::Status status = ready_();
    res.status = status.ok() ? 200 : 503;
    res.set_content(status.ok() ? "ready\n" : absl::StrCat("not ready: ", status.message(), "\n"),
                    "text/plain");
  });
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404 && res.body.empty())
      WriteError(res, absl::NotFoundError("no such route"));
  });
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    // Route labels stay low-cardinality: the first two path segments only.
    std::string route = req.path.substr(0, req.path.find('/', req.path.find('/', 1) + 1));
    metrics_.http_requests.Add({{"route", route}, {"status", std::to_string(res.status)}})
        .Increment();
  });
}

absl::StatusOr<int> AdminHttpServer::Start(const std::string& host, int port) {
  int bound =
      port == 0 ? http_->bind_to_any_port(host) : (http_->bind_to_port(host, port) ? port : -1);
  if (bound < 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on admin HTTP ", host, ":", port));
  }
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  return bound;
}

void AdminHttpServer::Stop() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace edgefleet::server
