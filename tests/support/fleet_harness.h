// Drives real edgefleet-server and edgefleet-agent processes on loopback for end-to-end tests:
// starts them with their own directories, exposes the admin API (gRPC with bearer metadata, and
// REST), the agents' local inference API, and the expected outputs of the generated test models.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "edgefleet/v1/admin.grpc.pb.h"
#include "edgefleet/v1/inference.grpc.pb.h"
#include "tests/support/process.h"

namespace edgefleet::test {

// A random hex string of `bytes` random bytes (admin tokens, device ids).
std::string RandomHex(size_t bytes);

// What a finished command printed, apart.
struct CommandResult {
  int exit_code = -1;  // -1 when it did not end within its timeout (it was killed)
  std::string out;     // stdout
  std::string err;     // stderr
};

class ServerHarness {
 public:
  // `bin_dir` holds edgefleet-server; the data directory, ports file and log live in `work_dir`.
  // A random admin token is installed at every start (--admin-token).
  ServerHarness(std::string bin_dir, std::string work_dir, std::string database_url);
  ~ServerHarness();

  ServerHarness(const ServerHarness&) = delete;
  ServerHarness& operator=(const ServerHarness&) = delete;

  // Starts the server (admin ports 0; the device port is `device_port`, 0 picks one) and waits
  // until it writes its ports file. False when the process exits first or `timeout` passes.
  bool TryStart(int device_port = 0, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // TryStart, throwing std::runtime_error with the log tail when it does not come up.
  void Start(int device_port = 0);
  // Stops it (SIGTERM) and starts it again on the same device port so agents find it again.
  void Restart();
  // Closes the admin channel, then SIGTERM and wait; returns the exit code.
  std::optional<int> Stop();
  void Kill();
  bool IsRunning() { return process_.IsRunning(); }
  // Exit code once the process has ended (waits up to `timeout`).
  std::optional<int> ExitCode(std::chrono::milliseconds timeout) { return process_.Wait(timeout); }

  const Ports& ports() const { return ports_; }
  std::string device_address() const;
  std::string data_dir() const { return data_dir_.empty() ? work_dir_ + "/data" : data_dir_; }
  // Replicas share one data directory (keys, artifacts) with the server that made it.
  void set_data_dir(std::string dir) { data_dir_ = std::move(dir); }
  // The CA agents pin before enrollment.
  std::string ca_file() const { return data_dir() + "/keys/ca.pem"; }
  std::string log_path() const { return work_dir_ + "/server.log"; }
  std::string LogText() const;
  // Where the server stores the artifact with this raw SHA-256 (tests damage it on purpose).
  std::string ArtifactPath(const std::string& sha256) const;
  const std::string& admin_token() const { return admin_token_; }
  // The token for the next start. Replicas on one database need the same one: each start
  // installs its token as the "admin" token, replacing the one installed before.
  void set_admin_token(std::string token) { admin_token_ = std::move(token); }
  const std::string& database_url() const { return database_url_; }
  // Extra flags for the next start (e.g. a bad --database-url).
  void set_extra_args(std::vector<std::string> args) { extra_args_ = std::move(args); }
  // The address the device API listens on and agents are given (127.0.0.1 unless set, e.g. the
  // host side of a veth pair); the server's TLS certificate names it too.
  void set_device_host(std::string host) { device_host_ = std::move(host); }

  // Admin gRPC. The stub follows restarts (it is rebuilt on every start; none while stopped).
  v1::AdminService::Stub& admin() { return *admin_; }
  // Adds "authorization: Bearer <token>" and a deadline.
  void Authorize(grpc::ClientContext* context,
                 std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

  grpc::Status CreateEnrollmentToken(uint32_t max_uses,
                                     const std::map<std::string, std::string>& labels,
                                     v1::EnrollmentToken* out);
  grpc::Status ListDevices(const std::string& label_selector, v1::ListDevicesResponse* out);
  grpc::Status GetDevice(const std::string& device_id, v1::Device* out);
  grpc::Status DecommissionDevice(const std::string& device_id, v1::Device* out);
  // Client-streams `bytes` after `metadata`, in 1 MiB chunks, then the finish message.
  grpc::Status PushModel(const v1::PushModelMetadata& metadata, const std::string& bytes,
                         v1::ModelVersion* out);
  // PushModel of the file at `path` with the classifier's tensor specs (input [1,4], probs [1,3]).
  grpc::Status PushClassifier(const std::string& model_name, const std::string& version,
                              const std::string& path, v1::ModelVersion* out);
  grpc::Status CreateDeployment(const std::string& model_name, const std::string& version,
                                const std::string& label_selector, v1::Deployment* out);
  grpc::Status GetDeployment(const std::string& deployment_id, v1::Deployment* out);

  // Admin REST: a client for the admin HTTP port (no Authorization header set).
  std::unique_ptr<httplib::Client> Http() const;
  httplib::Headers AuthHeaders() const;
  // GET /metrics body; "" when the request fails.
  std::string Metrics() const;

  // Runs `edgefleetctl --server <this server's admin gRPC> ARGS...` as an operator would, with
  // the admin token (or `token`) in EDGEFLEET_TOKEN, and waits up to a minute for it. Safe to
  // call from several threads at once; each run's stdout and stderr files stay in the work dir.
  CommandResult Ctl(const std::vector<std::string>& args) const;
  CommandResult Ctl(const std::vector<std::string>& args, const std::string& token) const;

 private:
  std::vector<std::string> Args(int device_port) const;

  std::string bin_dir_;
  std::string work_dir_;
  std::string database_url_;
  std::string admin_token_;
  std::string data_dir_;
  std::vector<std::string> extra_args_;
  std::string device_host_ = "127.0.0.1";
  Process process_;
  Ports ports_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  mutable std::atomic<int> ctl_runs_{0};
};

class AgentHarness {
 public:
  // State directory, socket and log live in `work_dir`.
  AgentHarness(std::string bin_dir, std::string work_dir, std::string device_id);
  ~AgentHarness();

  AgentHarness(const AgentHarness&) = delete;
  AgentHarness& operator=(const AgentHarness&) = delete;

  // Starts the agent with check-ins every second, at most 2 s of backoff, refused releases
  // retried after 1 s (doubling), and a 1 s probation after each swap.
  void Start(const std::string& server_address, const std::string& ca_file,
             const std::string& enrollment_token);
  // Start, given several server replicas (--server-addresses, tried in this order).
  void StartWithReplicas(const std::vector<std::string>& server_addresses,
                         const std::string& ca_file, const std::string& enrollment_token);
  // Starts again with the arguments of the last Start().
  void Restart();
  // Extra flags for the next Start() (e.g. --freshness-limit-seconds).
  void set_extra_args(std::vector<std::string> args) { extra_args_ = std::move(args); }
  // A command the agent runs under from the next Start(), e.g. {"/usr/sbin/ip", "netns", "exec",
  // NAME} (another network) or {"/usr/bin/faketime", "+1d"} (another clock); empty: none.
  void set_launcher(std::vector<std::string> launcher) { launcher_ = std::move(launcher); }
  std::optional<int> Stop();
  void Kill();
  bool IsRunning() { return process_.IsRunning(); }

  const std::string& device_id() const { return device_id_; }
  std::string state_dir() const { return work_dir_ + "/state"; }
  std::string socket_path() const { return work_dir_ + "/inference.sock"; }
  std::string log_path() const { return work_dir_ + "/agent.log"; }
  std::string LogText() const;
  // True once enrollment stored the device certificate.
  bool Enrolled() const;

  // A stub on a fresh channel to the agent's Unix socket (quick reconnects).
  std::unique_ptr<v1::InferenceService::Stub> NewInferenceStub() const;
  // One Predict on a fresh channel with a short deadline.
  grpc::Status Predict(const std::string& model_name, const std::vector<v1::Tensor>& inputs,
                       v1::PredictResponse* out) const;

 private:
  void StartWith(const std::vector<std::string>& server_args, const std::string& ca_file,
                 const std::string& enrollment_token);

  std::string bin_dir_;
  std::string work_dir_;
  std::string device_id_;
  std::vector<std::string> args_;
  std::vector<std::string> extra_args_;
  std::vector<std::string> launcher_;
  Process process_;
};

// Inputs and numpy-computed outputs of the generated test models (make_models.py's
// expected.txt), by model file name.
struct ExpectedModel {
  std::vector<v1::Tensor> inputs;
  std::vector<v1::Tensor> outputs;
};
// Throws std::runtime_error when the file cannot be read or parsed.
std::map<std::string, ExpectedModel> LoadExpectedModels(const std::string& expected_txt);

// Largest |a - b| over the elements; infinity when names, shapes or sizes differ.
double MaxAbsDifference(const v1::Tensor& a, const v1::Tensor& b);

// Sum of the samples of metric `name` (exact name) in a Prometheus text exposition whose labels
// include every pair of `labels`; nullopt when no sample matches.
std::optional<double> MetricValue(const std::string& exposition, const std::string& name,
                                  const std::map<std::string, std::string>& labels = {});

}  // namespace edgefleet::test
