#include "server/http/admin_http_server.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <httplib.h>

#include "absl/strings/escaping.h"
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

// The answer to a request whose body exceeds kMaxJsonBodyBytes.
constexpr int kPayloadTooLarge = 413;

// `http_status` 0 means HttpStatusFor(status.code()).
void WriteError(httplib::Response& res, const absl::Status& status, int http_status = 0) {
  v1::ErrorBody body;
  body.set_code(absl::StatusCodeToString(status.code()));
  body.set_message(std::string(status.message()));
  std::string json;
  // An ErrorBody of two strings always serializes.
  (void)google::protobuf::util::MessageToJsonString(body, &json);
  res.status = http_status != 0 ? http_status : HttpStatusFor(status.code());
  res.set_content(json, kJson);
}

// The status code an error answer made by cpp-httplib itself (not by a route) stands for.
absl::Status StatusForHttpError(int http_status) {
  switch (http_status) {
    case 400:
      return absl::InvalidArgumentError("malformed HTTP request");
    case 404:
      return absl::NotFoundError("no such route");
    case 405:
      return absl::UnimplementedError("method not allowed on this route");
    case 413:
      return absl::ResourceExhaustedError("request body too large");
    case 414:
      return absl::InvalidArgumentError("request URI too long");
    case 416:
      return absl::OutOfRangeError("requested range not satisfiable");
    case 431:
      return absl::InvalidArgumentError("request headers too large");
    case 503:
      return absl::UnavailableError("service unavailable");
    default:
      return http_status < 500 ? absl::InvalidArgumentError("bad request")
                               : absl::InternalError("internal error");
  }
}

// Reads a JSON request body of any Content-Type (curl -d sends form encoding) up to
// kMaxJsonBodyBytes; ResourceExhausted beyond, without reading what a Content-Length
// announces as too large.
absl::Status ReadBody(const httplib::Request& req, const httplib::ContentReader& content,
                      std::string* body) {
  const absl::Status too_large = absl::ResourceExhaustedError(
      absl::StrCat("request body is larger than ", AdminHttpServer::kMaxJsonBodyBytes, " bytes"));
  if (req.has_header("Content-Length")) {
    uint64_t length = 0;
    if (!absl::SimpleAtoi(req.get_header_value("Content-Length"), &length)) {
      return absl::InvalidArgumentError("Content-Length is not a number");
    }
    if (length > AdminHttpServer::kMaxJsonBodyBytes) return too_large;
  }
  bool over = false;
  bool complete = content([&](const char* data, size_t length) {
    if (body->size() + length > AdminHttpServer::kMaxJsonBodyBytes) {
      over = true;
      return false;
    }
    body->append(data, length);
    return true;
  });
  if (over) return too_large;
  if (!complete) return absl::InvalidArgumentError("the request body ended early");
  return absl::OkStatus();
}

void WriteMessage(httplib::Response& res, const Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  res.status = 200;
  res.set_content(json, kJson);
}

// A reference profile in JSON: 64 features of 255 edges and 256 bins fit with room to spare.
constexpr size_t kMaxReferenceJsonBytes = 2 * 1024 * 1024;

// "/v1/devices/{device_id}/labels" -> "/v1/devices/([^/]+)/labels" and {"device_id"}.
std::string PathPattern(std::string_view path, std::vector<std::string>* fields) {
  std::string pattern;
  size_t at = 0;
  while (true) {
    size_t open = path.find('{', at);
    if (open == std::string_view::npos) break;
    size_t close = path.find('}', open);
    absl::StrAppend(&pattern, std::string(path.substr(at, open - at)), "([^/]+)");
    fields->emplace_back(path.substr(open + 1, close - open - 1));
    at = close + 1;
  }
  absl::StrAppend(&pattern, std::string(path.substr(at)));
  return pattern;
}

// Sets the singular scalar field `name` of `message` from its text form. Unknown names are
// ignored (as before the table existed); a value of the wrong type is InvalidArgument.
absl::Status SetScalarField(Message* message, const std::string& name, const std::string& value) {
  using google::protobuf::FieldDescriptor;
  const FieldDescriptor* field = message->GetDescriptor()->FindFieldByName(name);
  if (field == nullptr || field->is_repeated()) return absl::OkStatus();
  const google::protobuf::Reflection* reflection = message->GetReflection();
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("parameter ", name, "='", value, "' is not a valid ", field->type_name()));
  };
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      reflection->SetString(message, field, value);
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad();
      reflection->SetInt32(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad();
      reflection->SetInt64(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad();
      reflection->SetUInt32(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(value, &v)) return bad();
      reflection->SetUInt64(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool v;
      if (!absl::SimpleAtob(value, &v)) return bad();
      reflection->SetBool(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto* v = field->enum_type()->FindValueByName(value);
      if (v == nullptr) return bad();
      reflection->SetEnum(message, field, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      // A time in its JSON form (RFC 3339, "2026-12-01T10:00:00Z"), e.g. ?since=.
      if (field->message_type()->full_name() != "google.protobuf.Timestamp") {
        return absl::OkStatus();
      }
      google::protobuf::Timestamp t;
      if (!google::protobuf::util::TimeUtil::FromString(value, &t)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "parameter ", name, "='", value, "' is not an RFC 3339 time (2026-12-01T10:00:00Z)"));
      }
      reflection->MutableMessage(message, field)->CopyFrom(t);
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

// Fills a call's request from the REST request: the body or the query string, then the path.
absl::Status BindRequest(const RestRoute& route, const std::vector<std::string>& path_fields,
                         const httplib::Request& req, const std::string& body, Message* request) {
  if (route.body == RestBody::kJson) {
    if (auto s = ParseJsonBody(body, request); !s.ok()) return s;
  } else {
    for (const auto& [name, value] : req.params) {
      if (auto s = SetScalarField(request, name, value); !s.ok()) return s;
    }
  }
  for (size_t i = 0; i < path_fields.size(); ++i) {
    if (auto s = SetScalarField(request, path_fields[i], req.matches[i + 1]); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseJsonBody(const std::string& body, Message* message) {
  if (body.empty()) return absl::OkStatus();
  auto status = google::protobuf::util::JsonStringToMessage(body, message);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("request body is not a valid ",
                                                   message->GetDescriptor()->name(),
                                                   " JSON: ", status.message().ToString()));
  }
  return absl::OkStatus();
}

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
      dispatcher_(api, auth),
      registry_(registry),
      metrics_(metrics),
      ready_(std::move(ready)),
      http_(std::make_unique<httplib::Server>()) {
  RegisterRoutes();
}

AdminHttpServer::~AdminHttpServer() { Stop(); }

void AdminHttpServer::RegisterCallRoutes() {
  httplib::Server& http = *http_;
  for (const AdminCall& call : AdminCalls()) {
    if (!call.rest.has_value()) continue;
    std::vector<std::string> path_fields;
    std::string pattern = PathPattern(call.rest->path, &path_fields);
    if (call.rest->body == RestBody::kRawUpload) {
      RegisterUploadRoute(call, pattern);
      continue;
    }
    // `content` is null for GET. Bodies are read here, not by httplib, so that JSON is accepted
    // whatever the Content-Type (httplib caps form-encoded bodies at 8 KiB).
    auto serve = [this, &call, path_fields](const httplib::Request& req, httplib::Response& res,
                                            const httplib::ContentReader* content) {
      auto principal = dispatcher_.Admit(call, req.get_header_value("Authorization"));
      std::string body;
      absl::Status read = content != nullptr ? ReadBody(req, *content, &body) : absl::OkStatus();
      absl::Status status = principal.ok() ? read : principal.status();
      if (absl::IsResourceExhausted(read)) {
        // What is left of the body is not read: this connection cannot carry another request.
        res.set_header("Connection", "close");
        if (principal.ok()) {
          WriteError(res, read, kPayloadTooLarge);
          return;
        }
      }
      std::unique_ptr<Message> request(call.request_prototype->New());
      if (status.ok()) status = BindRequest(*call.rest, path_fields, req, body, request.get());
      if (status.ok()) {
        auto response = dispatcher_.Run(call, *principal, *request);
        status = response.status();
        if (response.ok()) WriteMessage(res, **response);
      }
      if (!status.ok()) WriteError(res, status);
    };
    auto with_body = [serve](const httplib::Request& req, httplib::Response& res,
                             const httplib::ContentReader& content) { serve(req, res, &content); };
    switch (call.rest->method) {
      case HttpMethod::kGet:
        http.Get(pattern, [serve](const httplib::Request& req, httplib::Response& res) {
          serve(req, res, nullptr);
        });
        break;
      case HttpMethod::kPost:
        http.Post(pattern, with_body);
        break;
      case HttpMethod::kDelete:
        http.Delete(pattern, with_body);
        break;
    }
  }
}

void AdminHttpServer::RegisterUploadRoute(const AdminCall& call, const std::string& pattern) {
  httplib::Server& http = *http_;
  // The caller's principal, if it may make the upload call.
  auto authorize = [this, &call](const httplib::Request& req) -> absl::StatusOr<Principal> {
    return dispatcher_.Admit(call, req.get_header_value("Authorization"));
  };
  // Upload: the body is the raw model file; metadata rides in the path and query string
  // (?input=NAME:1x4&output=NAME:1x3&sha256=HEX&size=BYTES&label=k=v). The version is registered
  // only when the whole body arrived (Content-Length reached, or the last chunk of a chunked
  // body); a body over the size limit is refused with 413 before it is read. With a reference
  // profile the body is multipart/form-data instead: a "reference" part (the profile's JSON)
  // then a "model" part (the file); the size then comes from ?size= only.
  http.Post(pattern, [this, authorize](const httplib::Request& req, httplib::Response& res,
                                       const httplib::ContentReader& content) {
    auto principal = authorize(req);
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
    // A multipart body carries the reference profile too: its Content-Length is not the
    // model's size.
    const bool multipart = req.is_multipart_form_data();
    uint64_t content_length = 0;
    if (status.ok() && has_length &&
        !absl::SimpleAtoi(req.get_header_value("Content-Length"), &content_length)) {
      status = absl::InvalidArgumentError("Content-Length is not a number");
    }
    if (status.ok() && req.has_param("size")) {
      uint64_t size = 0;
      if (!absl::SimpleAtoi(req.get_param_value("size"), &size) || size == 0) {
        status = absl::InvalidArgumentError("size must be a positive number of bytes");
      } else if (has_length && !multipart && size != content_length) {
        status = absl::InvalidArgumentError(
            absl::StrCat("size=", size, " differs from the Content-Length of ", content_length));
      }
      metadata.set_expected_size_bytes(size);
    } else if (status.ok() && has_length && !multipart) {
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
    absl::StatusOr<std::unique_ptr<ModelUpload>> upload =
        absl::InvalidArgumentError("the multipart body has no 'model' part");
    auto begin = [&]() -> absl::Status {
      upload = api_.BeginPush(*principal, metadata);
      return upload.status();
    };
    // The body streams into the artifact store as httplib reads it; httplib reports a
    // body that ends before Content-Length (or before its last chunk) as false.
    absl::Status appended;
    auto append = [&](const char* data, size_t length) {
      appended = (*upload)->Append(std::string_view(data, length));
      return appended.ok();
    };
    bool complete = false;
    if (!multipart) {
      appended = begin();
      if (appended.ok()) complete = content(append);
    } else {
      // Parts: "reference" (an edgefleet.v1.ReferenceProfile as JSON, optional) and then
      // "model" (the file). The upload begins with the model part, its metadata complete.
      std::string part;
      std::string reference_json;
      complete = content(
          [&](const httplib::MultipartFormData& header) {
            part = header.name;
            if (part == "reference") {
              if (upload.ok()) {
                appended = absl::InvalidArgumentError(
                    "the 'reference' part must come before the 'model' part");
              }
              return appended.ok();
            }
            if (part != "model" || upload.ok()) {
              appended = absl::InvalidArgumentError(absl::StrCat(
                  "unexpected part '", part, "': an upload has a 'reference' and a 'model' part"));
              return false;
            }
            if (!reference_json.empty()) {
              appended = ParseJsonBody(reference_json, metadata.mutable_reference());
              if (!appended.ok()) return false;
            }
            appended = begin();
            return appended.ok();
          },
          [&](const char* data, size_t length) {
            if (part != "reference") return append(data, length);
            if (reference_json.size() + length > kMaxReferenceJsonBytes) {
              appended = absl::InvalidArgumentError(
                  absl::StrCat("the 'reference' part is over ", kMaxReferenceJsonBytes, " bytes"));
              return false;
            }
            reference_json.append(data, length);
            return true;
          });
      if (appended.ok() && complete && !upload.ok()) appended = upload.status();
    }
    if (!appended.ok()) {
      WriteError(res, appended);
      // Over the size limit: 413 (before the body is read when the size was declared).
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
}

void AdminHttpServer::RegisterRoutes() {
  httplib::Server& http = *http_;
  RegisterCallRoutes();

  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry_.Serialize(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  http.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    absl::Status status = ready_();
    if (!status.ok()) {
      WriteError(res, absl::UnavailableError(absl::StrCat("not ready: ", status.message())), 503);
      return;
    }
    res.set_content("ready\n", "text/plain");
  });
  // Every error answer is an ErrorBody, also those httplib makes itself (400 for a malformed
  // request, 404 for no route, 413, 414 for a URI over 8 KiB, ...).
  http.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
        if (res.get_header_value("Content-Type").rfind(kJson, 0) == 0) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        WriteError(res, StatusForHttpError(res.status), res.status);
        return httplib::Server::HandlerResponse::Handled;
      }));
  http.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr error) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        Logger("admin")->error("HTTP handler failed method={} path={}: {}", req.method,
                               absl::CHexEscape(req.path), absl::CHexEscape(what));
        WriteError(res, absl::InternalError("internal error"), 500);
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
