#include "agent/app/agent.h"

#include <grpcpp/grpcpp.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "agent/api/inference_service.h"
#include "agent/capture/capture_policy.h"
#include "agent/capture/capture_uploader.h"
#include "agent/capture/capturer.h"
#include "agent/serving/model_host.h"
#include "agent/serving/thread_priority.h"
#include "agent/state/identity_files.h"
#include "agent/state/state_store.h"
#include "agent/telemetry/telemetry_outbox.h"
#include "agent/update/device_transport.h"
#include "agent/update/failover_transport.h"
#include "agent/update/release_trust.h"
#include "agent/update/updater.h"
#include "common/core/files.h"
#include "common/core/logging.h"
#include "common/crypto/certificate_authority.h"
#include "common/crypto/random.h"
#include "common/crypto/sha256.h"
#include "common/crypto/signer.h"
#include "common/delta/delta.h"
#include "common/manifest/verification.h"
#include "common/metrics/metrics.h"

namespace edgefleet::agent {
namespace {

namespace fs = std::filesystem;

constexpr char kAgentVersion[] = "0.1.0";
// How often a version on probation is judged.
constexpr auto kProbationTick = std::chrono::milliseconds(500);

// Forwards to the transport built from the current key and certificate, so that a renewed
// certificate takes effect without rebuilding what holds the transport (the updater).
class IdentityTransport final : public DeviceTransport {
 public:
  void Replace(std::unique_ptr<DeviceTransport> inner) { inner_ = std::move(inner); }

  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) override {
    return inner_->CheckIn(request);
  }
  absl::Status FetchArtifact(const std::string& sha256, uint64_t offset,
                             const std::function<absl::Status(std::string_view)>& sink) override {
    return inner_->FetchArtifact(sha256, offset, sink);
  }
  absl::Status ReportEvents(const v1::ReportEventRequest& request) override {
    return inner_->ReportEvents(request);
  }
  absl::StatusOr<v1::UploadTelemetryResponse> UploadTelemetry(
      const v1::UploadTelemetryRequest& request) override {
    return inner_->UploadTelemetry(request);
  }
  absl::StatusOr<v1::UploadCaptureResponse> UploadCapture(
      const v1::UploadCaptureRequest& request) override {
    return inner_->UploadCapture(request);
  }
  absl::StatusOr<v1::RenewCertificateResponse> RenewCertificate(
      const v1::RenewCertificateRequest& request) override {
    return inner_->RenewCertificate(request);
  }

 private:
  std::unique_ptr<DeviceTransport> inner_;
};

class AgentImpl final : public Agent {
 public:
  AgentImpl(const v1::AgentConfig& config, const Clock& clock,
            std::unique_ptr<EngineFactory> engines)
      : config_(config),
        clock_(clock),
        engines_(std::move(engines)),
        state_dir_(config.state_dir()),
        host_(InferencePoolOptions{static_cast<int>(config.inference_threads()),
                                   static_cast<int>(config.inference_queue_limit())},
              !config.disable_telemetry()) {}

  ~AgentImpl() override {
    Stop();
    if (local_server_)
      local_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }

  absl::Status Init() {
    std::error_code ec;
    fs::create_directories(state_dir_, ec);
    if (ec)
      return absl::InternalError(
          absl::StrCat("cannot create ", state_dir_.string(), ": ", ec.message()));
    auto state = StateStore::Open((state_dir_ / "agent.db").string(),
                                  {.outbox_max_bytes = uint64_t{config_.outbox_max_mib()} << 20});
    if (!state.ok()) return state.status();
    state_ = *std::move(state);
    // Before anything serves: the capturer sees every request from the first one.
    capturer_ = std::make_unique<Capturer>(*state_, clock_, nullptr, &registry_);
    host_.SetRequestTap(capturer_.get());

    // Serve what was committed before anything touches the network.
    auto device = state_->DeviceId();
    if (!device.ok()) device = AdoptStoredCertificate();
    if (device.ok()) {
      if (auto s = LoadIdentity(*device); !s.ok()) return s;
      if (auto s = updater_->RestoreFromDisk(); !s.ok()) {
        Logger("agent")->error("some committed models could not be restored: {}", s.ToString());
      }
    }
    return StartLocalApi();
  }

  void Run() override {
    auto log = Logger("agent");
    // This thread does the agent's background work (check-ins, downloads, verification, model
    // loading and warm-up); the inference threads keep the priority they started with.
    if (auto s = LowerThisThreadPriority(static_cast<int>(config_.update_thread_nice())); !s.ok()) {
      log->warn("update work runs at the priority of inference: {}", s.ToString());
    }
    std::chrono::seconds backoff(1);
    auto next_telemetry = clock_.Now();
    auto next_check_in = std::chrono::steady_clock::now();
    const auto capture_interval = std::chrono::seconds(config_.capture_upload_interval_seconds());
    auto next_capture_upload = std::chrono::steady_clock::now() + capture_interval;
    while (!stopping()) {
      if (std::chrono::steady_clock::now() >= next_check_in) {
        absl::Status result = updater_ ? CheckInWithValidCertificate() : Enroll();
        if (trust_) trust_->CheckFreshness();
        std::chrono::milliseconds wait;
        if (result.ok()) {
          backoff = std::chrono::seconds(1);
          wait = Jittered(interval_);
          if (updater_) FlushTelemetry();
        } else {
          log->warn("{} failed, retrying in ~{}s: {}", updater_ ? "check-in" : "enrollment",
                    backoff.count(), result.ToString());
          wait = Jittered(backoff);
          backoff = std::min(backoff * 2, std::chrono::seconds(config_.max_backoff_seconds()));
        }
        next_check_in = std::chrono::steady_clock::now() + wait;
      }
      // Windows are cut on their own clock, online or not: offline they wait in the outbox.
      if (updater_ && clock_.Now() >= next_telemetry) {
        QueueTelemetry();
        next_telemetry = clock_.Now() + std::chrono::seconds(config_.telemetry_interval_seconds());
      }
      // Captures go out inside their upload window while the device is idle (the uploader
      // checks both); online or not, it is cheap to ask.
      if (updater_ && std::chrono::steady_clock::now() >= next_capture_upload) {
        UploadCaptures();
        next_capture_upload = std::chrono::steady_clock::now() + capture_interval;
      }
      auto wake = next_check_in;
      if (updater_) {
        wake = std::min(wake, next_capture_upload);
        // Not before enrollment: the telemetry clock starts with the first serving model's
        // updater, and a deadline already past would spin this loop.
        wake = std::min(wake, std::chrono::steady_clock::now() +
                                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      next_telemetry - clock_.Now()));
      }
      if (updater_ && updater_->OnProbation()) {
        updater_->CheckProbation();
        if (!updater_->OnProbation()) {
          // Tell the server at once what serves now (committed, or swapped back).
          next_check_in = std::chrono::steady_clock::now();
          continue;
        }
        wake = std::min(wake, std::chrono::steady_clock::now() + kProbationTick);
      }
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, wake, [this] { return stop_; });
    }
    if (updater_) {
      QueueTelemetry();
      FlushTelemetry();
    }
  }

  void Stop() override {
    std::lock_guard lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }

 private:
  bool stopping() {
    std::lock_guard lock(mu_);
    return stop_;
  }

  std::chrono::milliseconds Jittered(std::chrono::seconds base) {
    // +-20% so a fleet restarted together does not check in in lockstep.
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    return std::chrono::milliseconds(static_cast<int64_t>(
        static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(base).count()) *
        jitter(rng_)));
  }

  absl::Status StartLocalApi() {
    if (config_.local_socket().empty()) return absl::OkStatus();
    std::error_code ec;
    fs::remove(config_.local_socket(), ec);  // a stale socket from a previous run
    fs::create_directories(fs::path(config_.local_socket()).parent_path(), ec);
    inference_service_ = std::make_unique<InferenceGrpcService>(host_, [this] { return Status(); });
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat("unix:", config_.local_socket()),
                             grpc::InsecureServerCredentials());
    builder.RegisterService(inference_service_.get());
    builder.SetMaxReceiveMessageSize(64 << 20);
    local_server_ = builder.BuildAndStart();
    if (!local_server_) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ", config_.local_socket()));
    }
    Logger("agent")->info("local inference API listening socket={}", config_.local_socket());
    return absl::OkStatus();
  }

  absl::Status Enroll() {
    auto log = Logger("agent");
    if (config_.enrollment_token().empty()) {
      return absl::FailedPreconditionError("not enrolled and no enrollment token configured");
    }
    auto ca = ReadFile(config_.server_ca_file());
    if (!ca.ok())
      return absl::FailedPreconditionError(absl::StrCat("server CA: ", ca.status().message()));
    // A device enrolling again (expired certificate, operator's rekey) keeps its id.
    std::string device_id = device_id_.empty() ? config_.device_id() : device_id_;
    if (device_id.empty()) device_id = absl::StrCat("dev-", crypto::ToHex(crypto::RandomBytes(6)));
    auto key = crypto::GenerateKeyAndCsr(device_id);
    if (!key.ok()) return key.status();
    v1::EnrollRequest request;
    request.set_enrollment_token(config_.enrollment_token());
    request.set_device_id(device_id);
    request.set_csr_pem(key->csr_pem);
    *request.mutable_inventory() = Inventory();
    std::string enrolled_with;
    auto response = OnFirstReachable<v1::EnrollResponse>(
        ServerAddresses(config_), [&](const std::string& address) {
          enrolled_with = address;
          return EnrollOverGrpc(address, *ca, request);
        });
    if (!response.ok()) return response.status();
    for (auto [name, data] :
         {std::pair{"ca.pem", response->ca_certificate_pem()},
          std::pair{"release-root.pub", response->release_root_public_key_pem()}}) {
      if (auto s = WriteFileAtomically((state_dir_ / name).string(), data, false); !s.ok())
        return s;
    }
    if (auto s =
            ReplaceIdentity(state_dir_.string(), key->private_key_pem, response->certificate_pem());
        !s.ok()) {
      return s;
    }
    if (auto s = state_->SetIdentity(response->device_id()); !s.ok()) return s;
    log->info("enrolled device={} server={}", response->device_id(), enrolled_with);
    return LoadIdentity(response->device_id());
  }

  // The device id of a certificate stored by an enrollment that a crash interrupted before it
  // recorded the id: the server counts that enrollment, so enrolling again would be refused.
  absl::StatusOr<std::string> AdoptStoredCertificate() {
    if (auto s = RecoverIdentity(state_dir_.string()); !s.ok()) return s;
    auto cert = ReadFile((state_dir_ / kCertificateFile).string());
    if (!cert.ok()) return cert.status();
    auto info = crypto::ParseCertificate(*cert);
    if (!info.ok()) return info.status();
    if (auto s = state_->SetIdentity(info->common_name); !s.ok()) return s;
    Logger("agent")->warn("resuming an interrupted enrollment device={}", info->common_name);
    return info->common_name;
  }

  // Builds the transport and updater from the pinned material in the state directory; called
  // again after a renewal or a re-enrollment, it switches the transport to the new identity.
  absl::Status LoadIdentity(const std::string& device_id) {
    {
      std::lock_guard lock(status_mu_);
      device_id_ = device_id;
    }
    if (auto s = RecoverIdentity(state_dir_.string()); !s.ok()) return s;
    auto ca = ReadFile((state_dir_ / "ca.pem").string());
    auto cert = ReadFile((state_dir_ / kCertificateFile).string());
    auto key = ReadFile((state_dir_ / kKeyFile).string());
    auto root = ReadFile((state_dir_ / "release-root.pub").string());
    for (const auto* f : {&ca, &cert, &key, &root}) {
      if (!f->ok())
        return absl::DataLossError(
            absl::StrCat("enrolled state is incomplete: ", f->status().message()));
    }
    auto info = crypto::ParseCertificate(*cert);
    if (!info.ok()) {
      return absl::DataLossError(absl::StrCat("device certificate: ", info.status().message()));
    }
    certificate_ = *std::move(info);
    if (!transport_) transport_ = std::make_unique<IdentityTransport>();
    std::vector<FailoverTransport::Replica> replicas;
    for (const std::string& address : ServerAddresses(config_)) {
      replicas.push_back(
          {address, MakeGrpcDeviceTransport(
                        address, TlsMaterial{*ca, *cert, *key},
                        StallPolicy{std::chrono::seconds(config_.download_stall_window_seconds()),
                                    config_.download_min_bytes_per_second()})});
    }
    transport_->Replace(std::make_unique<FailoverTransport>(std::move(replicas)));
    if (updater_) return absl::OkStatus();
    auto verifier = crypto::LoadEd25519Verifier(*root);
    if (!verifier.ok()) return verifier.status();
    auto trust =
        ReleaseTrust::Open(*std::move(verifier), (state_dir_ / "release-trust.pb").string(), clock_,
                           std::chrono::seconds(config_.freshness_limit_seconds()), &registry_);
    if (!trust.ok()) return trust.status();
    (*trust)->SetRollbackFloorReset([this] { return state_->ForgetMetadataVersions(); });
    {
      std::lock_guard lock(status_mu_);
      trust_ = *std::move(trust);
    }
    RetryPolicy retry;
    retry.base_backoff = std::chrono::seconds(config_.update_retry_base_seconds());
    retry.max_attempts = config_.update_max_attempts();
    ProbationPolicy probation;
    probation.window = std::chrono::seconds(config_.probation_window_seconds());
    probation.min_requests = config_.probation_min_requests();
    probation.latency_ratio = config_.probation_latency_limit_percent() / 100.0;
    updater_ = std::make_unique<Updater>(*state_, host_, *engines_, *transport_, trust_->keys(),
                                         clock_, state_dir_.string(), retry, probation);
    updater_->SetManifestClock(trust_->trusted_clock());
    host_.SetWindowClock(&trust_->trusted_clock());
    return absl::OkStatus();
  }

  // Renews the certificate at two thirds of its lifetime; once it has expired, says so and
  // enrolls again (which the server allows only after an operator's rekey).
  absl::Status CheckInWithValidCertificate() {
    auto log = Logger("agent");
    const int64_t now = ToUnixSeconds(clock_.Now());
    if (now >= certificate_.not_after_unix) {
      const std::string expired = absl::StrCat(
          "certificate expired on ", FormatUnixTime(certificate_.not_after_unix),
          "; re-enroll or ask the operator to rekey (edgefleetctl device rekey ", device_id_, ")");
      log->error("{}", expired);
      if (config_.enrollment_token().empty()) return absl::FailedPreconditionError(expired);
      if (auto s = Enroll(); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat(expired, "; enrolling again: ", s.message()));
      }
      return CheckInOnce();
    }
    if (now >= RenewAt()) {
      if (auto s = RenewCertificate(); !s.ok()) {
        log->warn("certificate renewal failed; the current one serves until {}: {}",
                  FormatUnixTime(certificate_.not_after_unix), s.ToString());
      }
    }
    return CheckInOnce();
  }

  // Two thirds into the certificate's lifetime, counted from its issue (the CA backdates
  // notBefore for clock skew).
  int64_t RenewAt() const {
    int64_t issued = certificate_.not_before_unix + crypto::kClockSkewAllowance.count();
    if (issued >= certificate_.not_after_unix) issued = certificate_.not_before_unix;
    return issued + (certificate_.not_after_unix - issued) * 2 / 3;
  }

  // A new key, certified by the server over mutual TLS with the current one. The new pair is
  // stored crash-safely before it is used; the server retires the old certificate when it
  // first sees the new one, so losing the answer or crashing midway costs nothing.
  absl::Status RenewCertificate() {
    auto key = crypto::GenerateKeyAndCsr(device_id_);
    if (!key.ok()) return key.status();
    v1::RenewCertificateRequest request;
    request.set_csr_pem(key->csr_pem);
    auto response = transport_->RenewCertificate(request);
    if (!response.ok()) return response.status();
    auto info = crypto::ParseCertificate(response->certificate_pem());
    if (!info.ok()) return info.status();
    auto ca = ReadFile((state_dir_ / "ca.pem").string());
    if (!ca.ok()) return ca.status();
    if (info->common_name != device_id_) {
      return absl::DataLossError(
          absl::StrCat("renewed certificate names '", info->common_name, "'"));
    }
    if (auto s =
            crypto::VerifyIssuedBy(response->certificate_pem(), *ca, ToUnixSeconds(clock_.Now()));
        !s.ok()) {
      return s;
    }
    if (auto s =
            ReplaceIdentity(state_dir_.string(), key->private_key_pem, response->certificate_pem());
        !s.ok()) {
      return s;
    }
    if (auto s = LoadIdentity(device_id_); !s.ok()) return s;
    Logger("agent")->info("certificate renewed serial={} not_after={}", info->serial_hex,
                          FormatUnixTime(info->not_after_unix));
    return absl::OkStatus();
  }

  // The local API's GetAgentStatus: called from its threads while Run() may be enrolling.
  v1::AgentStatus Status() {
    v1::AgentStatus status;
    {
      std::lock_guard lock(status_mu_);
      status.set_device_id(device_id_);
      if (trust_) {
        trust_->CheckFreshness();
        *status.mutable_trust() = trust_->Status();
      }
    }
    status.set_metrics_text(registry_.Serialize());
    return status;
  }

  v1::Inventory Inventory() {
    v1::Inventory inventory;
    struct utsname name;
    if (::uname(&name) == 0) {
      inventory.set_hardware(name.machine);
      inventory.set_os(absl::StrCat(name.sysname, " ", name.release));
    }
    inventory.set_agent_version(kAgentVersion);
    inventory.set_patch_decoder_version(delta::kDecoderFormatVersion);
    inventory.set_inference_runtime("opencv-dnn");
    struct sysinfo info;
    if (::sysinfo(&info) == 0)
      inventory.set_free_memory_bytes(uint64_t{info.freeram} * info.mem_unit);
    struct statvfs disk;
    if (::statvfs(state_dir_.c_str(), &disk) == 0) {
      inventory.set_free_disk_bytes(uint64_t{disk.f_bavail} * disk.f_frsize);
    }
    if (updater_) {
      for (auto& m : updater_->InstalledModels()) *inventory.add_models() = std::move(m);
    }
    return inventory;
  }

  absl::Status CheckInOnce() {
    (void)updater_->FlushEvents();
    v1::CheckInRequest request;
    *request.mutable_inventory() = Inventory();
    auto response = transport_->CheckIn(request);
    if (!response.ok()) return response.status();
    // An answer that is not fresh, not for this device or not signed by a trusted key is not
    // acted on; what it asked for is reported so the server's view says why.
    if (absl::Status trusted = trust_->AcceptAnswer(*response, device_id_); !trusted.ok()) {
      for (const v1::DesiredModel& desired : response->desired()) {
        const v1::ModelVersion& m = desired.metadata();
        auto current = host_.Get(m.model_name());
        if (current && current->version == m.version()) continue;
        // Once per version and reason, not at every refused check-in.
        std::string key =
            absl::StrCat(m.version(), "/", static_cast<int>(FailureReasonOf(trusted)));
        if (untrusted_reported_[m.model_name()] == key) continue;
        untrusted_reported_[m.model_name()] = std::move(key);
        updater_->ReportUntrusted(desired, trusted);
      }
      return trusted;
    }
    // What the releases ask to capture, for the versions they target. The out-of-range trigger
    // reads the ranges of the version's uploaded reference profile (none for a version binned by
    // the default profile: it never fires). The ranges only choose what to capture; the profile
    // the agent bins by is the one checked against the signed manifest at install.
    std::vector<CaptureRequest> capture;
    for (const v1::DesiredModel& desired : response->desired()) {
      if (!desired.capture().enabled()) continue;
      capture.push_back(CaptureRequest{desired.metadata().model_name(),
                                       desired.metadata().version(), desired.capture(),
                                       RangesFromReference(desired.reference())});
    }
    capturer_->SetRequests(capture);
    if (response->check_in_interval().seconds() > 0 && config_.check_in_interval_seconds() == 0) {
      interval_ = std::chrono::seconds(response->check_in_interval().seconds());
    }
    bool changed = false;
    for (const v1::DesiredModel& desired : response->desired()) {
      auto current = host_.Get(desired.metadata().model_name());
      if (current && current->version == desired.metadata().version()) continue;
      // A refused release waiting for its next attempt changes nothing.
      if (!updater_->Due(desired).ok()) continue;
      changed = true;
      // Each model's failure is reported and handled by the updater; others still update.
      (void)updater_->Apply(desired);
    }
    if (changed) {
      // Tell the server promptly what now serves, rather than at the next interval.
      v1::CheckInRequest after;
      *after.mutable_inventory() = Inventory();
      (void)transport_->CheckIn(after);
    }
    return absl::OkStatus();
  }

  // Cuts every serving version's telemetry window into the outbox.
  void QueueTelemetry() {
    TelemetryOutbox outbox(*state_, *transport_);
    // Dated by the server's signed time, like the windows' starts (ModelHost::SetWindowClock).
    for (const v1::TelemetryWindow& window : host_.CutTelemetry(trust_->TrustedNow())) {
      if (auto s = outbox.Enqueue(window); !s.ok()) {
        Logger("telemetry")->warn("telemetry window lost: {}", s.ToString());
      }
    }
  }

  // Sends what the outbox holds; what is not answered stays for the next check-in.
  void FlushTelemetry() {
    auto flushed = TelemetryOutbox(*state_, *transport_).Flush();
    if (!flushed.ok()) {
      Logger("telemetry")
          ->debug("telemetry windows wait in the outbox: {}", flushed.status().ToString());
    }
  }

  // Uploads what the outbox holds of captured requests whose window is open, while idle.
  void UploadCaptures() {
    const auto idle_after = std::chrono::seconds(config_.capture_idle_seconds());
    CaptureUploader uploader(*state_, *transport_, clock_, SystemLocalHour, [&] {
      return std::chrono::steady_clock::now() - host_.LastRequest() >= idle_after;
    });
    auto flushed = uploader.Flush();
    if (!flushed.ok()) {
      Logger("capture")->debug("captured requests wait in the outbox: {}",
                               flushed.status().ToString());
    } else if (flushed->accepted + flushed->refused > 0) {
      Logger("capture")->info("captured requests uploaded accepted={} refused={}",
                              flushed->accepted, flushed->refused);
    }
  }

  v1::AgentConfig config_;
  const Clock& clock_;
  std::unique_ptr<EngineFactory> engines_;
  fs::path state_dir_;
  std::unique_ptr<StateStore> state_;
  // Declared before host_: it outlives the inference threads that call it.
  std::unique_ptr<Capturer> capturer_;
  ModelHost host_;
  std::string device_id_;
  crypto::CertificateInfo certificate_;
  metrics::Registry registry_;
  std::mutex status_mu_;  // device_id_ and trust_, read by the local API's threads
  std::unique_ptr<ReleaseTrust> trust_;
  std::map<std::string, std::string> untrusted_reported_;  // model -> "version/reason"
  std::unique_ptr<IdentityTransport> transport_;
  std::unique_ptr<Updater> updater_;
  std::unique_ptr<InferenceGrpcService> inference_service_;
  std::unique_ptr<grpc::Server> local_server_;
  std::chrono::seconds interval_{std::chrono::seconds(
      config_.check_in_interval_seconds() ? config_.check_in_interval_seconds() : 30)};
  std::mt19937 rng_{std::random_device{}()};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace

v1::AgentConfig Agent::WithDefaults(v1::AgentConfig c) {
  if (c.state_dir().empty()) c.set_state_dir("/var/lib/edgefleet-agent");
  if (c.server_address().empty() && c.server_addresses().empty()) {
    c.set_server_address("localhost:7443");
  }
  if (c.max_backoff_seconds() == 0) c.set_max_backoff_seconds(60);
  if (c.telemetry_interval_seconds() == 0) c.set_telemetry_interval_seconds(60);
  if (c.update_retry_base_seconds() == 0) c.set_update_retry_base_seconds(30);
  if (c.update_max_attempts() == 0) c.set_update_max_attempts(5);
  if (c.probation_window_seconds() == 0) c.set_probation_window_seconds(60);
  if (c.probation_min_requests() == 0) c.set_probation_min_requests(50);
  if (c.probation_latency_limit_percent() == 0) c.set_probation_latency_limit_percent(200);
  if (c.inference_threads() == 0) c.set_inference_threads(2);
  if (c.inference_queue_limit() == 0) c.set_inference_queue_limit(64);
  if (c.update_thread_nice() == 0) c.set_update_thread_nice(19);
  if (c.outbox_max_mib() == 0) c.set_outbox_max_mib(64);
  if (c.capture_idle_seconds() == 0) c.set_capture_idle_seconds(30);
  if (c.capture_upload_interval_seconds() == 0) c.set_capture_upload_interval_seconds(60);
  if (c.log_level().empty()) c.set_log_level("info");
  if (c.freshness_limit_seconds() == 0) {
    c.set_freshness_limit_seconds(static_cast<uint32_t>(kDefaultFreshnessLimit.count()));
  }
  const StallPolicy stall;
  if (c.download_stall_window_seconds() == 0) {
    c.set_download_stall_window_seconds(static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::seconds>(stall.window).count()));
  }
  if (c.download_min_bytes_per_second() == 0) {
    c.set_download_min_bytes_per_second(static_cast<uint32_t>(stall.min_bytes_per_second));
  }
  if (c.server_ca_file().empty())
    c.set_server_ca_file((fs::path(c.state_dir()) / "ca.pem").string());
  return c;
}

absl::StatusOr<std::unique_ptr<Agent>> Agent::Start(const v1::AgentConfig& config,
                                                    const Clock& clock,
                                                    std::unique_ptr<EngineFactory> engines) {
  if (config.update_thread_nice() > static_cast<uint32_t>(kMaxNice)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "update_thread_nice is ", config.update_thread_nice(), ", at most ", kMaxNice));
  }
  auto agent = std::make_unique<AgentImpl>(WithDefaults(config), clock, std::move(engines));
  if (auto s = agent->Init(); !s.ok()) return s;
  return agent;
}

}  // namespace edgefleet::agent
