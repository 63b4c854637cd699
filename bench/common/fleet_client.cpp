#include "bench/common/fleet_client.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/crypto/certificate_authority.h"

namespace edgefleet::bench {

using namespace std::chrono_literals;

std::string ReadFileOrThrow(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

grpc::ChannelArguments DeviceChannelArgs() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(8 << 20);
  return args;
}

void AuthorizeAdmin(grpc::ClientContext* context, const std::string& admin_token) {
  context->AddMetadata("authorization", "Bearer " + admin_token);
  context->set_deadline(std::chrono::system_clock::now() + 60s);
}

std::unique_ptr<v1::AdminService::Stub> AdminStub(const std::string& admin_address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  return v1::AdminService::NewStub(
      grpc::CreateCustomChannel(admin_address, grpc::InsecureChannelCredentials(), args));
}

v1::PushModelMetadata ClassifierMetadata(const std::string& model_name,
                                         const std::string& version) {
  v1::PushModelMetadata m;
  m.set_model_name(model_name);
  m.set_version(version);
  m.set_format(v1::MODEL_FORMAT_ONNX);
  auto* input = m.add_inputs();
  input->set_name("input");
  input->add_shape(1);
  input->add_shape(4);
  auto* output = m.add_outputs();
  output->set_name("probs");
  output->add_shape(1);
  output->add_shape(3);
  return m;
}

void PushModelVersion(v1::AdminService::Stub& admin, const std::string& admin_token,
                      const v1::PushModelMetadata& metadata, const std::string& bytes) {
  grpc::ClientContext context;
  AuthorizeAdmin(&context, admin_token);
  v1::ModelVersion pushed;
  auto writer = admin.PushModel(&context, &pushed);
  v1::PushModelRequest request;
  *request.mutable_metadata() = metadata;
  writer->Write(request);
  constexpr size_t kChunk = 64 << 10;
  for (size_t at = 0; at < bytes.size(); at += kChunk) {
    request.Clear();
    request.set_chunk(bytes.substr(at, kChunk));
    writer->Write(request);
  }
  request.Clear();
  request.mutable_finish()->set_size_bytes(bytes.size());
  writer->Write(request);
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (!s.ok() && s.error_code() != grpc::StatusCode::ALREADY_EXISTS) {
    throw std::runtime_error("push " + metadata.model_name() + " " + metadata.version() + ": " +
                             s.error_message());
  }
}

std::string CreateEnrollmentToken(v1::AdminService::Stub& admin, const std::string& admin_token,
                                  uint32_t uses) {
  grpc::ClientContext context;
  AuthorizeAdmin(&context, admin_token);
  v1::CreateEnrollmentTokenRequest request;
  request.set_max_uses(uses);
  request.set_ttl_seconds(3600);
  v1::EnrollmentToken token;
  grpc::Status s = admin.CreateEnrollmentToken(&context, request, &token);
  if (!s.ok()) throw std::runtime_error("enrollment token: " + s.error_message());
  return token.token();
}

DeviceIdentity EnrollDevice(const std::string& device_address, const std::string& ca_pem,
                            const std::string& enrollment_token, const std::string& device_id,
                            const v1::Inventory& inventory) {
  auto key = crypto::GenerateKeyAndCsr(device_id);
  if (!key.ok()) throw std::runtime_error("key for " + device_id + ": " + key.status().ToString());
  grpc::SslCredentialsOptions anonymous;
  anonymous.pem_root_certs = ca_pem;
  auto stub = v1::DeviceService::NewStub(grpc::CreateCustomChannel(
      device_address, grpc::SslCredentials(anonymous), DeviceChannelArgs()));
  v1::EnrollRequest request;
  request.set_enrollment_token(enrollment_token);
  request.set_device_id(device_id);
  request.set_csr_pem(key->csr_pem);
  *request.mutable_inventory() = inventory;
  v1::EnrollResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 60s);
  grpc::Status s = stub->Enroll(&context, request, &response);
  if (!s.ok()) throw std::runtime_error("enroll " + device_id + ": " + s.error_message());
  return {device_id, response.certificate_pem(), key->private_key_pem};
}

std::shared_ptr<grpc::Channel> OpenDeviceChannel(const std::string& device_address,
                                                 const std::string& ca_pem,
                                                 const DeviceIdentity& identity) {
  grpc::SslCredentialsOptions mtls;
  mtls.pem_root_certs = ca_pem;
  mtls.pem_cert_chain = identity.certificate_pem;
  mtls.pem_private_key = identity.private_key_pem;
  return grpc::CreateCustomChannel(device_address, grpc::SslCredentials(mtls), DeviceChannelArgs());
}

void ForEachInParallel(int count, int threads, const std::function<void(int)>& enroll) {
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  std::string error;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (int i = next++; i < count && !failed; i = next++) {
        try {
          enroll(i);
        } catch (const std::exception& e) {
          std::lock_guard lock(error_mu);
          if (error.empty()) error = e.what();
          failed = true;
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  if (failed) throw std::runtime_error(error);
}

void ConnectAll(const std::vector<std::shared_ptr<grpc::Channel>>& channels, int seconds) {
  for (const auto& c : channels) c->GetState(/*try_to_connect=*/true);
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(seconds);
  for (size_t i = 0; i < channels.size(); ++i) {
    if (!channels[i]->WaitForConnected(deadline)) {
      throw std::runtime_error("channel " + std::to_string(i) + " did not connect within " +
                               std::to_string(seconds) + " s");
    }
  }
}

double Quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  const size_t k =
      std::min(values.size() - 1, static_cast<size_t>(q * static_cast<double>(values.size())));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end());
  return values[k];
}

double ProcessRssMib(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

namespace {

// The parent and CPU seconds of a process from /proc/PID/stat; false when it is gone.
bool ReadStat(const std::string& pid, int* parent, double* cpu_seconds) {
  std::ifstream stat("/proc/" + pid + "/stat");
  std::string line;
  if (!std::getline(stat, line) || line.rfind(')') == std::string::npos) return false;
  // Fields after the command (which may hold spaces, so read from its closing parenthesis):
  // state is field 3, the parent 4, utime and stime 14 and 15.
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 4) *parent = std::stoi(field);
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  *cpu_seconds = ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  return true;
}

}  // namespace

double ProcessCpuSeconds(int pid) {
  int parent = 0;
  double seconds = 0;
  return ReadStat(pid == 0 ? "self" : std::to_string(pid), &parent, &seconds) ? seconds : 0;
}

double ProcessTreeCpuSeconds(int pid) {
  double total = ProcessCpuSeconds(pid);
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    int parent = 0;
    double seconds = 0;
    if (ReadStat(name, &parent, &seconds) && parent == pid) total += seconds;
  }
  return total;
}

}  // namespace edgefleet::bench
