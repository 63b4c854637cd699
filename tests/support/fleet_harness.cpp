#include "tests/support/fleet_harness.h"

#include <grpcpp/grpcpp.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>

namespace edgefleet::test {
namespace {

namespace fs = std::filesystem;

constexpr size_t kPushChunkBytes = 1 << 20;

}  // namespace

std::string RandomHex(size_t bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::random_device rd;
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    unsigned v = rd() & 0xff;
    out += kDigits[v >> 4];
    out += kDigits[v & 0xf];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// ServerHarness

ServerHarness::ServerHarness(std::string bin_dir, std::string work_dir, std::string database_url)
    : bin_dir_(std::move(bin_dir)),
      work_dir_(std::move(work_dir)),
      database_url_(std::move(database_url)),
      admin_token_("efa_test_" + RandomHex(16)) {
  fs::create_directories(work_dir_);
}

ServerHarness::~ServerHarness() { process_.Kill(); }

std::vector<std::string> ServerHarness::Args(int device_port) const {
  std::vector<std::string> args = {
      "--data-dir",
      data_dir(),
      "--database-url",
      database_url_,
      "--device-listen",
      device_host_ + ":" + std::to_string(device_port),
      "--admin-grpc-listen",
      "127.0.0.1:0",
      "--admin-http-listen",
      "127.0.0.1:0",
      "--admin-token",
      admin_token_,
      "--ports-file",
      work_dir_ + "/ports.json",
      "--check-in-interval-seconds",
      "1",
      "--database-pool-size",
      "4",
  };
  if (device_host_ != "127.0.0.1") {
    args.insert(args.end(), {"--tls-hosts", "localhost,127.0.0.1," + device_host_});
  }
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  return args;
}

bool ServerHarness::TryStart(int device_port, std::chrono::milliseconds timeout) {
  const std::string ports_file = work_dir_ + "/ports.json";
  std::error_code ec;
  fs::remove(ports_file, ec);  // the previous run's ports are stale
  process_.Spawn(bin_dir_ + "/edgefleet-server", Args(device_port), {}, log_path());
  std::optional<Ports> ports;
  WaitFor(
      [&] {
        ports = ReadPortsFile(ports_file);
        return ports.has_value() || !process_.IsRunning();
      },
      timeout);
  if (!ports) return false;
  ports_ = *ports;
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxSendMessageSize(8 << 20);
  admin_ = v1::AdminService::NewStub(
      grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(ports_.admin_grpc),
                                grpc::InsecureChannelCredentials(), channel_args));
  return true;
}

void ServerHarness::Start(int device_port) {
  if (!TryStart(device_port)) {
    process_.Kill();
    throw std::runtime_error("edgefleet-server did not come up; log:\n" + LogText());
  }
}

void ServerHarness::Restart() {
  const int device_port = ports_.device;
  Stop();
  Start(device_port);
}

std::optional<int> ServerHarness::Stop() {
  // An open admin connection holds the server's graceful shutdown until its 5 s deadline
  // (see the integration report); tests stop it the way a finished CLI would, by closing it.
  admin_.reset();
  return process_.Terminate();
}

void ServerHarness::Kill() { process_.Kill(); }

std::string ServerHarness::device_address() const {
  return device_host_ + ":" + std::to_string(ports_.device);
}

std::string ServerHarness::LogText() const { return ReadFile(log_path()).value_or(""); }

std::string ServerHarness::ArtifactPath(const std::string& sha256) const {
  static const char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : sha256) {
    hex += kDigits[c >> 4];
    hex += kDigits[c & 0xf];
  }
  return data_dir() + "/artifacts/sha256/" + hex.substr(0, 2) + "/" + hex;
}

void ServerHarness::Authorize(grpc::ClientContext* context,
                              std::chrono::milliseconds timeout) const {
  context->AddMetadata("authorization", "Bearer " + admin_token_);
  context->set_deadline(std::chrono::system_clock::now() + timeout);
}

grpc::Status ServerHarness::CreateEnrollmentToken(uint32_t max_uses,
                                                  const std::map<std::string, std::string>& labels,
                                                  v1::EnrollmentToken* out) {
  grpc::ClientContext context;
  Authorize(&context);
  v1::CreateEnrollmentTokenRequest request;
  request.set_max_uses(max_uses);
  request.set_description("integration test");
  for (const auto& [k, v] : labels) (*request.mutable_labels())[k] = v;
  return admin_->CreateEnrollmentToken(&context, request, out);
}

grpc::Status ServerHarness::ListDevices(const std::string& label_selector,
                                        v1::ListDevicesResponse* out) {
  grpc::ClientContext context;
  Authorize(&context);
  v1::ListDevicesRequest request;
  request.set_label_selector(label_selector);
  return admin_->ListDevices(&context, request, out);
}

grpc::Status ServerHarness::GetDevice(const std::string& device_id, v1::Device* out) {
  grpc::ClientContext context;
  Authorize(&context);
  v1::GetDeviceRequest request;
  request.set_device_id(device_id);
  return admin_->GetDevice(&context, request, out);
}

grpc::Status ServerHarness::DecommissionDevice(const std::string& device_id, v1::Device* out) {
  grpc::ClientContext context;
  Authorize(&context);
  v1::DecommissionDeviceRequest request;
  request.set_device_id(device_id);
  return admin_->DecommissionDevice(&context, request, out);
}

grpc::Status ServerHarness::PushModel(const v1::PushModelMetadata& metadata,
                                      const std::string& bytes, v1::ModelVersion* out) {
  grpc::ClientContext context;
  Authorize(&context, std::chrono::seconds(120));
  auto writer = admin_->PushModel(&context, out);
  v1::PushModelRequest first;
  *first.mutable_metadata() = metadata;
  bool open = writer->Write(first);
  for (size_t offset = 0; open && offset < bytes.size(); offset += kPushChunkBytes) {
    v1::PushModelRequest chunk;
    chunk.set_chunk(bytes.substr(offset, kPushChunkBytes));
    open = writer->Write(chunk);
  }
  if (open) {
    v1::PushModelRequest finish;
    finish.mutable_finish()->set_size_bytes(bytes.size());
    open = writer->Write(finish);
  }
  // A refused upload closes the stream early; Finish carries the server's reason.
  writer->WritesDone();
  return writer->Finish();
}

grpc::Status ServerHarness::PushClassifier(const std::string& model_name,
                                           const std::string& version, const std::string& path,
                                           v1::ModelVersion* out) {
  auto bytes = ReadFile(path);
  if (!bytes) return grpc::Status(grpc::StatusCode::NOT_FOUND, "cannot read " + path);
  v1::PushModelMetadata metadata;
  metadata.set_model_name(model_name);
  metadata.set_version(version);
  metadata.set_format(v1::MODEL_FORMAT_ONNX);
  auto* input = metadata.add_inputs();
  input->set_name("input");
  input->add_shape(1);
  input->add_shape(4);
  auto* output = metadata.add_outputs();
  output->set_name("probs");
  output->add_shape(1);
  output->add_shape(3);
  return PushModel(metadata, *bytes, out);
}

grpc::Status ServerHarness::CreateDeployment(const std::string& model_name,
                                             const std::string& version,
                                             const std::string& label_selector,
                                             v1::Deployment* out) {
  grpc::ClientContext context;
  Authorize(&context);
  v1::CreateDeploymentRequest request;
  request.set_model_name(model_name);
  request.set_version(version);
  request.set_label_selector(label_selector);
  return admin_->CreateDeployment(&context, request, out);
}

grpc::Status ServerHarness::GetDeployment(const std::string& deployment_id, v1::Deployment* out) {
  grpc::ClientContext context;
  Authorize(&context);
  v1::GetDeploymentRequest request;
  request.set_deployment_id(deployment_id);
  return admin_->GetDeployment(&context, request, out);
}

std::unique_ptr<httplib::Client> ServerHarness::Http() const {
  auto client = std::make_unique<httplib::Client>("127.0.0.1", ports_.admin_http);
  client->set_connection_timeout(5, 0);
  client->set_read_timeout(30, 0);
  return client;
}

httplib::Headers ServerHarness::AuthHeaders() const {
  return {{"Authorization", "Bearer " + admin_token_}};
}

std::string ServerHarness::Metrics() const {
  auto result = Http()->Get("/metrics");
  if (!result || result->status != 200) return "";
  return result->body;
}

CommandResult ServerHarness::Ctl(const std::vector<std::string>& args) const {
  return Ctl(args, admin_token_);
}

CommandResult ServerHarness::Ctl(const std::vector<std::string>& args,
                                 const std::string& token) const {
  std::vector<std::string> all = {"--server", "127.0.0.1:" + std::to_string(ports_.admin_grpc)};
  all.insert(all.end(), args.begin(), args.end());
  const std::string base = work_dir_ + "/ctl-" + std::to_string(++ctl_runs_);
  Process ctl;
  ctl.Spawn(bin_dir_ + "/edgefleetctl", all, {{"EDGEFLEET_TOKEN", token}}, base + ".out",
            base + ".err");
  CommandResult result;
  result.exit_code = ctl.Wait(std::chrono::seconds(60)).value_or(-1);
  ctl.Kill();
  result.out = ReadFile(base + ".out").value_or("");
  result.err = ReadFile(base + ".err").value_or("");
  return result;
}

// ---------------------------------------------------------------------------------------------
// AgentHarness

AgentHarness::AgentHarness(std::string bin_dir, std::string work_dir, std::string device_id)
    : bin_dir_(std::move(bin_dir)),
      work_dir_(std::move(work_dir)),
      device_id_(std::move(device_id)) {
  fs::create_directories(work_dir_);
}

AgentHarness::~AgentHarness() { process_.Kill(); }

void AgentHarness::Start(const std::string& server_address, const std::string& ca_file,
                         const std::string& enrollment_token) {
  StartWith({"--server-address", server_address}, ca_file, enrollment_token);
}

void AgentHarness::StartWithReplicas(const std::vector<std::string>& server_addresses,
                                     const std::string& ca_file,
                                     const std::string& enrollment_token) {
  std::string joined;
  for (const std::string& address : server_addresses) {
    joined += (joined.empty() ? "" : ",") + address;
  }
  StartWith({"--server-addresses", joined}, ca_file, enrollment_token);
}

void AgentHarness::StartWith(const std::vector<std::string>& server_args,
                             const std::string& ca_file, const std::string& enrollment_token) {
  args_ = server_args;
  std::vector<std::string> rest = {
      "--state-dir",
      state_dir(),
      "--server-ca-file",
      ca_file,
      "--enrollment-token",
      enrollment_token,
      "--device-id",
      device_id_,
      "--local-socket",
      socket_path(),
      "--check-in-interval-seconds",
      "1",
      "--max-backoff-seconds",
      "2",
      "--telemetry-interval-seconds",
      "1",
      "--update-retry-base-seconds",
      "1",
      // A short probation that any traffic satisfies, lenient on latency (loaded test machines):
      // tests about probation itself override these.
      "--probation-window-seconds",
      "1",
      "--probation-min-requests",
      "1",
      "--probation-latency-limit-percent",
      "1000",
  };
  args_.insert(args_.end(), rest.begin(), rest.end());
  args_.insert(args_.end(), extra_args_.begin(), extra_args_.end());
  Restart();
}

void AgentHarness::Restart() {
  if (args_.empty()) throw std::runtime_error("AgentHarness::Restart before Start");
  if (launcher_.empty()) {
    process_.Spawn(bin_dir_ + "/edgefleet-agent", args_, {}, log_path());
    return;
  }
  std::vector<std::string> args(launcher_.begin() + 1, launcher_.end());
  args.push_back(bin_dir_ + "/edgefleet-agent");
  args.insert(args.end(), args_.begin(), args_.end());
  process_.Spawn(launcher_.front(), args, {}, log_path());
}

std::optional<int> AgentHarness::Stop() { return process_.Terminate(); }

void AgentHarness::Kill() { process_.Kill(); }

std::string AgentHarness::LogText() const { return ReadFile(log_path()).value_or(""); }

bool AgentHarness::Enrolled() const {
  std::error_code ec;
  return fs::exists(state_dir() + "/cert.pem", ec);
}

std::unique_ptr<v1::InferenceService::Stub> AgentHarness::NewInferenceStub() const {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  // Each harness stub gets its own connection rather than a shared global subchannel.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return v1::InferenceService::NewStub(
      grpc::CreateCustomChannel("unix:" + socket_path(), grpc::InsecureChannelCredentials(), args));
}

grpc::Status AgentHarness::Predict(const std::string& model_name,
                                   const std::vector<v1::Tensor>& inputs,
                                   v1::PredictResponse* out) const {
  auto stub = NewInferenceStub();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::PredictRequest request;
  request.set_model_name(model_name);
  for (const auto& t : inputs) *request.add_inputs() = t;
  return stub->Predict(&context, request, out);
}

// ---------------------------------------------------------------------------------------------
// Expected outputs and metrics

std::map<std::string, ExpectedModel> LoadExpectedModels(const std::string& expected_txt) {
  auto text = ReadFile(expected_txt);
  if (!text) throw std::runtime_error("cannot read " + expected_txt);
  std::map<std::string, ExpectedModel> models;
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string file, kind, name, shape;
    if (!(fields >> file >> kind >> name >> shape) || (kind != "input" && kind != "output")) {
      throw std::runtime_error("bad line in " + expected_txt + ": " + line);
    }
    v1::Tensor tensor;
    tensor.set_name(name);
    std::istringstream dims(shape);
    std::string dim;
    while (std::getline(dims, dim, ',')) tensor.add_shape(std::stoll(dim));
    double value;
    while (fields >> value) tensor.add_data(static_cast<float>(value));
    auto& model = models[file];
    (kind == "input" ? model.inputs : model.outputs).push_back(std::move(tensor));
  }
  return models;
}

double MaxAbsDifference(const v1::Tensor& a, const v1::Tensor& b) {
  if (a.name() != b.name() || a.data_size() != b.data_size() || a.shape_size() != b.shape_size()) {
    return std::numeric_limits<double>::infinity();
  }
  for (int i = 0; i < a.shape_size(); ++i) {
    if (a.shape(i) != b.shape(i)) return std::numeric_limits<double>::infinity();
  }
  double worst = 0;
  for (int i = 0; i < a.data_size(); ++i) {
    double d = std::fabs(static_cast<double>(a.data(i)) - static_cast<double>(b.data(i)));
    if (std::isnan(d)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, d);
  }
  return worst;
}

namespace {

// Parses `k="v",k2="v2"` (the inside of the braces) of one exposition sample.
std::map<std::string, std::string> ParseLabels(const std::string& text) {
  std::map<std::string, std::string> labels;
  size_t i = 0;
  while (i < text.size()) {
    size_t eq = text.find('=', i);
    if (eq == std::string::npos || eq + 1 >= text.size() || text[eq + 1] != '"') break;
    std::string key = text.substr(i, eq - i);
    std::string value;
    size_t j = eq + 2;
    for (; j < text.size() && text[j] != '"'; ++j) {
      if (text[j] == '\\' && j + 1 < text.size()) {
        ++j;
        value += text[j] == 'n' ? '\n' : text[j];
      } else {
        value += text[j];
      }
    }
    labels[key] = value;
    i = j + 1;
    if (i < text.size() && text[i] == ',') ++i;
  }
  return labels;
}

}  // namespace

std::optional<double> MetricValue(const std::string& exposition, const std::string& name,
                                  const std::map<std::string, std::string>& labels) {
  std::optional<double> sum;
  std::istringstream lines(exposition);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.compare(0, name.size(), name) != 0) continue;
    size_t after = name.size();
    std::map<std::string, std::string> sample_labels;
    if (after < line.size() && line[after] == '{') {
      size_t close = line.rfind('}');
      if (close == std::string::npos) continue;
      sample_labels = ParseLabels(line.substr(after + 1, close - after - 1));
      after = close + 1;
    }
    if (after >= line.size() || line[after] != ' ') continue;  // a longer metric name
    bool match = true;
    for (const auto& [k, v] : labels) {
      auto it = sample_labels.find(k);
      if (it == sample_labels.end() || it->second != v) match = false;
    }
    if (!match) continue;
    double value = std::strtod(line.c_str() + after + 1, nullptr);
    sum = sum.value_or(0) + value;
  }
  return sum;
}

}  // namespace edgefleet::test
