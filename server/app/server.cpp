#include "server/app/server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/core/logging.h"
#include "common/core/process.h"
#include "common/crypto/certificate_authority.h"
#include "common/crypto/random.h"
#include "common/crypto/sha256.h"
#include "common/crypto/signer.h"
#include "common/metrics/metrics.h"
#include "server/api/admin_grpc_service.h"
#include "server/api/device_grpc_service.h"
#include "server/api/request_limits.h"
#include "server/artifacts/artifact_store.h"
#include "server/capture/capture_service.h"
#include "server/enrollment/release_trust.h"
#include "server/enrollment/server_identity.h"
#include "server/http/admin_http_server.h"
#include "server/patches/patch_service.h"
#include "server/rollout/controller.h"
#include "server/store/api_token_repo.h"
#include "server/store/audit_repo.h"
#include "server/store/capture_repo.h"
#include "server/store/database.h"
#include "server/store/event_repo.h"
#include "server/store/last_seen_batcher.h"
#include "server/store/patch_repo.h"
#include "server/store/reference_repo.h"
#include "server/store/rollup_repo.h"
#include "server/store/telemetry_repo.h"
#include "server/telemetry/drift_service.h"
#include "server/telemetry/drift_sources.h"
#include "server/telemetry/fleet_reference.h"
#include "server/telemetry/rollup_job.h"
#include "server/telemetry/rollups.h"
#include "server/telemetry/stats.h"

namespace edgefleet::server {
namespace {

// Idle threads the device API's sync server keeps between calls (see StartGrpc).
constexpr int kIdleDeviceThreads = 32;

absl::StatusOr<std::pair<std::string, int>> SplitHostPort(const std::string& address) {
  size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("'", address, "' is not HOST:PORT"));
  }
  return std::make_pair(address.substr(0, colon), port);
}

class ServerImpl final : public Server {
 public:
  ServerImpl(const v1::ServerConfig& config, const Clock& clock) : config_(config), clock_(clock) {}

  ~ServerImpl() override { Shutdown(); }

  absl::Status Init() {
    auto log = Logger("server");
    auto database = Database::Open({.url = config_.database_url(),
                                    .pool_size = static_cast<int>(config_.database_pool_size())});
    if (!database.ok()) return database.status();
    database_ = *std::move(database);
    if (auto s = database_->Migrate(); !s.ok()) return s;
    log->info("database ready url={} schema_version={}", database_->redacted_url(),
              database_->LatestKnownVersion());

    std::vector<std::string> hosts =
        absl::StrSplit(config_.tls_hosts(), ',', absl::SkipWhitespace());
    auto identity =
        LoadOrCreateServerIdentity(config_.data_dir(), hosts, ToUnixSeconds(clock_.Now()));
    if (!identity.ok()) return identity.status();
    identity_ = *std::move(identity);
    auto ca = crypto::CertificateAuthority::Load(identity_.ca_certificate_pem,
                                                 identity_.ca_private_key_pem);
    if (!ca.ok()) return ca.status();
    ca_ = *std::move(ca);
    auto signer = crypto::LoadEd25519Signer(identity_.release_private_key_pem);
    if (!signer.ok()) return signer.status();
    release_signer_ = *std::move(signer);
    auto trust =
        LoadOrCreateReleaseTrust((std::filesystem::path(config_.data_dir()) / "keys").string(),
                                 identity_.release_public_key_pem, clock_.Now());
    if (!trust.ok()) return trust.status();
    release_trust_ = *std::move(trust);
    if (release_trust_.root_online) {
      log->warn(
          "release root key is held ONLINE in {}/keys/root.key: whoever takes this host can sign "
          "releases for every device. Keep the root offline: edgefleetctl keys init, then keys "
          "delegate, and leave only root.pub and delegation.bin here",
          config_.data_dir());
    }
    if (FromUnixSeconds(release_trust_.decoded.expires_at().seconds()) - clock_.Now() <
        kDelegationRenewBefore) {
      log->warn(
          "the release key delegation expires at unix time {}: devices refuse every "
          "release after that; issue the next one with edgefleetctl keys delegate",
          release_trust_.decoded.expires_at().seconds());
    }
    log->info(
        "keys ready data_dir={} release_key_id={} delegation_version={} "
        "delegation_expires_unix={}",
        config_.data_dir(), release_signer_->KeyId(), release_trust_.decoded.delegation_version(),
        release_trust_.decoded.expires_at().seconds());

    api_tokens_ = std::make_unique<ApiTokenRepo>(*database_);
    enrollment_tokens_ = std::make_unique<EnrollmentTokenRepo>(*database_);
    devices_ = std::make_unique<DeviceRepo>(*database_);
    models_ = std::make_unique<ModelRepo>(*database_);
    deployments_ = std::make_unique<DeploymentRepo>(*database_);
    events_ = std::make_unique<EventRepo>(*database_);
    telemetry_ = std::make_unique<TelemetryRepo>();
    references_ = std::make_unique<ReferenceRepo>();
    audit_ = std::make_unique<AuditRepo>();
    patch_repo_ = std::make_unique<PatchRepo>(*database_);
    rollout_repo_ = std::make_unique<RolloutRepo>();
    inference_samples_ = std::make_unique<InferenceSampleRepo>();
    capture_repo_ = std::make_unique<CaptureRepo>(*database_);
    if (auto s = InstallAdminToken(); !s.ok()) return s;

    metrics_ = std::make_unique<ServerMetrics>(registry_);
    registry_.AddCollectHook([this] {
      auto counts = devices_->CountByStatus();
      if (!counts.ok()) return;
      for (const char* status : {"pending", "active", "decommissioned"}) {
        auto it = counts->find(status);
        metrics_->devices.Add({{"status", status}})
            .Set(it == counts->end() ? 0 : static_cast<double>(it->second));
      }
      CollectRolloutGauges();
      CollectUnseenDevices();
      CollectPatchBacklog();
    });
    artifacts_ = MakeFilesystemArtifactStore(
        (std::filesystem::path(config_.data_dir()) / "artifacts").string());
    // Uploads a crash interrupted are never finished: their bytes go.
    auto abandoned = artifacts_->RemoveAbandonedUploads();
    if (!abandoned.ok()) return abandoned.status();
    if (*abandoned > 0) {
      Logger("server")->info("removed abandoned uploads count={}", *abandoned);
    }

    // Captured field data: a blob store of its own, so that retention never touches models.
    capture_blobs_ = MakeFilesystemArtifactStore(
        (std::filesystem::path(config_.data_dir()) / "captures").string());
    if (auto s = capture_blobs_->RemoveAbandonedUploads(); !s.ok()) return s.status();
    captures_ = std::make_unique<capture::CaptureService>(
        *database_, *capture_repo_, *capture_blobs_, clock_, *metrics_,
        capture::CaptureOptions{
            .max_capture_bytes = config_.max_capture_bytes(),
            .retention = std::chrono::hours(24 * int64_t{config_.capture_retention_days()})});

    patches_ = std::make_unique<PatchService>(
        *database_, *patch_repo_, *artifacts_, *metrics_,
        PatchServiceOptions{
            .workers = static_cast<int>(config_.patch_workers()),
            .time_budget = std::chrono::seconds(config_.patch_time_budget_seconds()),
            .lease = std::chrono::seconds(config_.patch_lease_seconds()),
            // Expired leases are noticed within half a lease (at most every 5 s).
            .poll_interval = std::min<std::chrono::milliseconds>(
                std::chrono::seconds(5),
                std::chrono::milliseconds(500 * int64_t{config_.patch_lease_seconds()}))});
    if (auto s = patches_->Start(); !s.ok()) return s;
    rollout_controller_ = std::make_unique<rollout::RolloutController>(
        *database_, *rollout_repo_, *audit_, *inference_samples_, clock_, metrics_.get(),
        rollout::ControllerOptions{.interval =
                                       std::chrono::milliseconds(config_.rollout_interval_ms())});
    rollout_controller_->Start();
    rollup_repo_ = std::make_unique<RollupRepo>();
    rollup_store_ = std::make_unique<telemetry::DatabaseRollupStore>(*rollup_repo_);
    rollup_job_ = std::make_unique<telemetry::RollupJob>(
        *database_, *rollup_repo_, *rollup_store_, clock_, *metrics_,
        telemetry::RollupJobOptions{
            .interval = std::chrono::seconds(config_.telemetry_rollup_interval_seconds()),
            .max_windows_per_run = config_.telemetry_rollup_batch_windows(),
            .devices_reporting_window =
                std::chrono::minutes(config_.telemetry_devices_reporting_minutes()),
            .retention = std::chrono::hours(24 * int64_t{config_.telemetry_retention_days()})});
    rollup_job_->Start();
    telemetry_queries_ = std::make_unique<telemetry::TelemetryQueries>(*database_, *rollup_store_,
                                                                       *rollup_repo_, clock_);
    drift_sources_ = std::make_unique<telemetry::StoredDriftSources>(*database_, *models_,
                                                                     *references_, *rollup_store_);
    drift_thresholds_ = std::make_unique<DriftThresholdRepo>();
    drift_ = std::make_unique<telemetry::DriftService>(
        *database_, *drift_thresholds_, *drift_sources_, clock_,
        telemetry::DriftOptions{.range = std::chrono::minutes(config_.drift_range_minutes())});
    drift_gauges_ = std::make_unique<telemetry::DriftGauges>(registry_);
    // Drift gauges are scored at a scrape, at most once per roll-up interval: their inputs
    // change only when the roll-up job runs.
    registry_.AddCollectHook([this] {
      const auto now = std::chrono::steady_clock::now();
      const auto interval = std::chrono::seconds(config_.telemetry_rollup_interval_seconds());
      std::lock_guard<std::mutex> lock(drift_refresh_mu_);
      if (drift_refreshed_.has_value() && now - *drift_refreshed_ < interval) return;
      drift_refreshed_ = now;
      if (auto s = drift_->RefreshGauges(*drift_gauges_); !s.ok()) {
        Logger("telemetry")->warn("drift gauges: {}", s.ToString());
      }
    });
    admin_api_ = std::make_unique<AdminApi>(
        AdminRepos{*database_, *enrollment_tokens_, *devices_, *models_, *deployments_, *audit_,
                   *api_tokens_, references_.get()},
        *artifacts_, clock_, *metrics_,
        AdminApiOptions{.max_artifact_bytes = config_.max_artifact_bytes(),
                        .fleet_reference_windows = config_.fleet_reference_windows()},
        AdminServices{.patches = patches_.get(),
                      .rollouts = rollout_controller_.get(),
                      .telemetry = telemetry_queries_.get(),
                      .drift = drift_.get(),
                      .captures = captures_.get()});
    last_seen_ = std::make_unique<LastSeenBatcher>(
        *database_, *devices_, std::chrono::milliseconds(config_.last_seen_flush_ms()));
    last_seen_->Start();
    device_api_ = std::make_unique<DeviceApi>(
        DeviceRepos{*database_, *devices_, *models_, *deployments_, *events_, *telemetry_,
                    *last_seen_, references_.get()},
        *artifacts_, *release_signer_, clock_, *metrics_,
        DeviceApiOptions{
            .check_in_interval = std::chrono::seconds(config_.check_in_interval_seconds()),
            .manifest_ttl = std::chrono::seconds(config_.manifest_ttl_seconds()),
            .delegation = release_trust_.delegation,
            .telemetry_windows = {.retention = std::chrono::hours(
                                      24 * int64_t{config_.telemetry_retention_days()})}},
        patches_.get(), patch_repo_.get(), captures_.get());
    // Today's partitions before the first upload; then hourly (new days, expired ones). A
    // failure here is not fatal: an upload creates the partition of its day itself.
    if (auto s = device_api_->telemetry().Maintain(); !s.ok()) {
      log->error("telemetry partitions: {}", s.ToString());
    }
    telemetry_maintenance_ = RunEvery(std::chrono::hours(1), [this] {
      if (auto s = device_api_->telemetry().Maintain(); !s.ok()) {
        Logger("telemetry")->error("telemetry partitions: {}", s.ToString());
      }
      if (auto s = rollup_job_->Maintain(); !s.ok()) {
        Logger("telemetry")->error("telemetry roll-up retention: {}", s.ToString());
      }
      if (auto s = captures_->Maintain(); !s.ok()) {
        Logger("capture")->error("capture retention: {}", s.ToString());
      }
    });
    fleet_references_ = std::make_unique<telemetry::FleetReferences>(
        *database_, *references_, config_.fleet_reference_windows());
    fleet_reference_tick_ =
        RunEvery(std::chrono::seconds(config_.fleet_reference_interval_seconds()), [this] {
          if (auto made = fleet_references_->MakeDue(); !made.ok()) {
            Logger("telemetry")->error("fleet reference profiles: {}", made.status().ToString());
          }
        });
    // Memory a burst of calls left in the threads' heap arenas goes back to the system: the
    // server's RSS returns near its idle size once a load has passed.
    memory_release_ = RunEvery(std::chrono::seconds(30), [] { ReleaseFreeHeapMemory(); });
    authenticator_ = std::make_unique<Authenticator>(*api_tokens_, clock_);
    enroller_ = std::make_unique<Enroller>(
        *database_, *devices_, *ca_, release_trust_.root_public_key_pem, clock_,
        std::chrono::seconds(config_.device_certificate_validity_seconds()));
    admin_grpc_ = std::make_unique<AdminGrpcService>(*admin_api_, *authenticator_, *metrics_);
    device_grpc_ = std::make_unique<DeviceGrpcService>(*device_api_, *enroller_, *metrics_);

    if (auto s = StartGrpc(); !s.ok()) return s;
    http_ = std::make_unique<AdminHttpServer>(*admin_api_, *authenticator_, registry_, *metrics_,
                                              [this] { return Ready(); });
    auto http_address = SplitHostPort(config_.admin_http_listen());
    if (!http_address.ok()) return http_address.status();
    auto http_port = http_->Start(http_address->first, http_address->second);
    if (!http_port.ok()) return http_port.status();
    ports_.admin_http = *http_port;
    log->info("listening device={} admin_grpc={} admin_http={}", ports_.device, ports_.admin_grpc,
              ports_.admin_http);
    return WritePortsFile();
  }

  BoundPorts ports() const override { return ports_; }
  std::string generated_admin_token() const override { return generated_admin_token_; }

  void Wait() override {
    if (device_server_) device_server_->Wait();
  }

  void Shutdown() override {
    if (stopped_.exchange(true)) return;
    // An evaluation in progress finishes (or its transaction rolls back) before the servers go.
    if (rollout_controller_) rollout_controller_->Stop();
    if (rollup_job_) rollup_job_->Stop();
    if (telemetry_maintenance_.joinable()) {
      telemetry_maintenance_.request_stop();
      telemetry_maintenance_.join();
    }
    if (fleet_reference_tick_.joinable()) {
      fleet_reference_tick_.request_stop();
      fleet_reference_tick_.join();
    }
    if (http_) http_->Stop();
    // One shared, short deadline: idle client channels must not hold shutdown for long.
    auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(2);
    if (admin_server_) admin_server_->Shutdown(deadline);
    if (device_server_) device_server_->Shutdown(deadline);
    // After the device API stopped: the last check-ins' times are written.
    if (last_seen_) last_seen_->Stop();
  }

 private:
  // edgefleet_rollouts{state} and edgefleet_rollout_targets{state}, read at each scrape.
  void CollectRolloutGauges() {
    auto counts = database_->Transact("count rollouts for metrics", [&](Tx& tx) {
      return rollout_repo_->CountRolloutsByState(tx);
    });
    if (counts.ok()) {
      for (const char* state :
           {"pending", "running", "paused", "succeeded", "aborted", "rolled_back"}) {
        auto it = counts->find(state);
        metrics_->rollouts.Add({{"state", state}})
            .Set(it == counts->end() ? 0 : static_cast<double>(it->second));
      }
    }
    auto targets = database_->Transact("count rollout targets for metrics", [&](Tx& tx) {
      return rollout_repo_->CountTargetsByState(tx);
    });
    if (targets.ok()) {
      for (const char* state :
           {"pending", "in_progress", "serving", "failed", "superseded", "rolled_back"}) {
        auto it = targets->find(state);
        metrics_->rollout_targets.Add({{"state", state}})
            .Set(it == targets->end() ? 0 : static_cast<double>(it->second));
      }
    }
  }

  // edgefleet_devices_unseen{longer_than}, read at each scrape.
  void CollectUnseenDevices() {
    const int64_t now = ToUnixSeconds(clock_.Now());
    std::vector<int64_t> cutoffs;
    for (const UnseenLimit& limit : kUnseenLimits) cutoffs.push_back(now - limit.age.count());
    auto counts = devices_->CountActiveNotSeenSince(cutoffs);
    if (!counts.ok() || counts->size() != cutoffs.size()) return;
    for (size_t i = 0; i < cutoffs.size(); ++i) {
      metrics_->devices_unseen.Add({{"longer_than", kUnseenLimits[i].label}})
          .Set(static_cast<double>((*counts)[i]));
    }
  }

  // edgefleet_patches{state} and edgefleet_patch_oldest_pending_age_seconds, read at each scrape.
  void CollectPatchBacklog() {
    auto backlog = patch_repo_->Backlog();
    if (!backlog.ok()) return;
    for (const auto& [state, count] : backlog->by_state) {
      metrics_->patches.Add({{"state", state}}).Set(static_cast<double>(count));
    }
    metrics_->patch_oldest_pending_age.Add({}).Set(backlog->oldest_pending_age_seconds);
  }

  absl::Status Ready() {
    if (auto s = database_->Ping(); !s.ok()) return s;
    auto version = database_->SchemaVersion();
    if (!version.ok()) return version.status();
    if (*version != database_->LatestKnownVersion()) {
      return absl::UnavailableError(
          absl::StrCat("schema version ", *version, ", want ", database_->LatestKnownVersion()));
    }
    return absl::OkStatus();
  }

  // An operator-supplied token replaces the admin token; otherwise one is generated the first
  // time the database has no token at all, and shown once.
  absl::Status InstallAdminToken() {
    auto install = [this](const std::string& token) {
      return database_->Transact("install admin token", [&](Tx& tx) {
        return api_tokens_->Upsert(tx, "admin", "admin", crypto::Sha256Bytes(token));
      });
    };
    if (!config_.admin_token().empty()) return install(config_.admin_token());
    auto any = api_tokens_->Any();
    if (!any.ok()) return any.status();
    if (*any) return absl::OkStatus();
    generated_admin_token_ = absl::StrCat("efa_", crypto::RandomToken(24));
    return install(generated_admin_token_);
  }

  absl::Status StartGrpc() {
    grpc::SslServerCredentialsOptions tls(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
    tls.pem_root_certs = identity_.ca_certificate_pem;
    tls.pem_key_cert_pairs.push_back(
        {identity_.server_private_key_pem, identity_.server_certificate_pem});
    grpc::ServerBuilder device_builder;
    device_builder.AddListeningPort(config_.device_listen(), grpc::SslServerCredentials(tls),
                                    &ports_.device);
    device_builder.RegisterService(device_grpc_.get());
    // Every request within RequestLimits fits; larger ones are refused before they are parsed.
    device_builder.SetMaxReceiveMessageSize(RequestLimits::kMaxDeviceMessageBytes);
    // The sync server starts a thread for each call that finds no idle one and ends threads
    // beyond MAX_POLLERS (default 2) as soon as they are idle: at thousands of device calls a
    // second that was a thread created and destroyed per call (stacks mapped and faulted in).
    // Keep enough idle threads for a burst. And one completion queue per core instead of one
    // for all: every thread polled the same queue (one-window telemetry uploads: about 900/s
    // with one queue, 1,100/s with two on this 2-core machine; docs/benchmarks.md).
    device_builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                                       kIdleDeviceThreads);
    device_builder.SetSyncServerOption(
        grpc::ServerBuilder::SyncServerOption::NUM_CQS,
        static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    device_server_ = device_builder.BuildAndStart();
    if (!device_server_ || ports_.device == 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on device API ", config_.device_listen()));
    }
    grpc::ServerBuilder admin_builder;
    admin_builder.AddListeningPort(config_.admin_grpc_listen(), grpc::InsecureServerCredentials(),
                                   &ports_.admin_grpc);
    admin_builder.RegisterService(admin_grpc_.get());
    // PushModel chunks up to RequestLimits::kUploadChunkBytes (the CLI sends 64 KiB) fit.
    admin_builder.SetMaxReceiveMessageSize(RequestLimits::kMaxAdminMessageBytes);
    admin_server_ = admin_builder.BuildAndStart();
    if (!admin_server_ || ports_.admin_grpc == 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on admin gRPC ", config_.admin_grpc_listen()));
    }
    return absl::OkStatus();
  }

  absl::Status WritePortsFile() {
    if (config_.ports_file().empty()) return absl::OkStatus();
    std::string tmp = config_.ports_file() + ".tmp";
    {
      std::ofstream out(tmp);
      out << "{\"device\": " << ports_.device << ", \"admin_grpc\": " << ports_.admin_grpc
          << ", \"admin_http\": " << ports_.admin_http << "}\n";
      if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
    }
    std::error_code ec;
    std::filesystem::rename(tmp, config_.ports_file(), ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot write ", config_.ports_file()));
    return absl::OkStatus();
  }

  v1::ServerConfig config_;
  const Clock& clock_;
  std::atomic<bool> stopped_{false};
  std::unique_ptr<Database> database_;
  ServerIdentity identity_;
  ServerReleaseTrust release_trust_;
  std::unique_ptr<crypto::CertificateAuthority> ca_;
  std::unique_ptr<crypto::Signer> release_signer_;
  std::unique_ptr<ApiTokenRepo> api_tokens_;
  std::unique_ptr<EnrollmentTokenRepo> enrollment_tokens_;
  std::unique_ptr<DeviceRepo> devices_;
  std::unique_ptr<ModelRepo> models_;
  std::unique_ptr<DeploymentRepo> deployments_;
  std::unique_ptr<EventRepo> events_;
  std::unique_ptr<TelemetryRepo> telemetry_;
  std::unique_ptr<ReferenceRepo> references_;
  std::unique_ptr<AuditRepo> audit_;
  std::unique_ptr<PatchRepo> patch_repo_;
  std::unique_ptr<RolloutRepo> rollout_repo_;
  std::unique_ptr<InferenceSampleRepo> inference_samples_;
  std::unique_ptr<CaptureRepo> capture_repo_;
  metrics::Registry registry_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<ArtifactStore> capture_blobs_;
  std::unique_ptr<capture::CaptureService> captures_;
  std::unique_ptr<PatchService> patches_;
  std::unique_ptr<rollout::RolloutController> rollout_controller_;
  std::unique_ptr<RollupRepo> rollup_repo_;
  std::unique_ptr<telemetry::DatabaseRollupStore> rollup_store_;
  std::unique_ptr<telemetry::RollupJob> rollup_job_;
  std::unique_ptr<telemetry::TelemetryQueries> telemetry_queries_;
  std::unique_ptr<telemetry::StoredDriftSources> drift_sources_;
  std::unique_ptr<DriftThresholdRepo> drift_thresholds_;
  std::unique_ptr<telemetry::DriftService> drift_;
  std::unique_ptr<telemetry::DriftGauges> drift_gauges_;
  std::mutex drift_refresh_mu_;
  std::optional<std::chrono::steady_clock::time_point> drift_refreshed_;  // by drift_refresh_mu_
  std::unique_ptr<LastSeenBatcher> last_seen_;
  std::unique_ptr<AdminApi> admin_api_;
  std::unique_ptr<DeviceApi> device_api_;
  std::jthread telemetry_maintenance_;  // DeviceApi::telemetry().Maintain() every hour
  std::unique_ptr<telemetry::FleetReferences> fleet_references_;
  std::jthread fleet_reference_tick_;  // fleet_references_->MakeDue() on its interval
  std::jthread memory_release_;        // ReleaseFreeHeapMemory() every 30 s
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<Enroller> enroller_;
  std::unique_ptr<AdminGrpcService> admin_grpc_;
  std::unique_ptr<DeviceGrpcService> device_grpc_;
  std::unique_ptr<grpc::Server> device_server_;
  std::unique_ptr<grpc::Server> admin_server_;
  std::unique_ptr<AdminHttpServer> http_;
  BoundPorts ports_;
  std::string generated_admin_token_;
};

}  // namespace

v1::ServerConfig Server::WithDefaults(v1::ServerConfig c) {
  if (c.data_dir().empty()) c.set_data_dir("/var/lib/edgefleet");
  if (c.device_listen().empty()) c.set_device_listen("0.0.0.0:7443");
  if (c.admin_grpc_listen().empty()) c.set_admin_grpc_listen("127.0.0.1:7444");
  if (c.admin_http_listen().empty()) c.set_admin_http_listen("127.0.0.1:7480");
  if (c.tls_hosts().empty()) c.set_tls_hosts("localhost,127.0.0.1");
  if (c.check_in_interval_seconds() == 0) c.set_check_in_interval_seconds(30);
  if (c.max_artifact_bytes() == 0) c.set_max_artifact_bytes(2ull << 30);
  if (c.manifest_ttl_seconds() == 0) c.set_manifest_ttl_seconds(24 * 3600);
  if (c.database_pool_size() == 0) c.set_database_pool_size(8);
  if (c.log_level().empty()) c.set_log_level("info");
  if (c.patch_workers() == 0) c.set_patch_workers(2);
  if (c.patch_time_budget_seconds() == 0) c.set_patch_time_budget_seconds(120);
  if (c.patch_lease_seconds() == 0) c.set_patch_lease_seconds(60);
  if (c.device_certificate_validity_seconds() == 0) {
    c.set_device_certificate_validity_seconds(90 * 24 * 3600);
  }
  if (c.rollout_interval_ms() == 0) c.set_rollout_interval_ms(5000);
  if (c.last_seen_flush_ms() == 0) c.set_last_seen_flush_ms(5000);
  if (c.telemetry_retention_days() == 0) c.set_telemetry_retention_days(30);
  if (c.telemetry_rollup_interval_seconds() == 0) c.set_telemetry_rollup_interval_seconds(10);
  if (c.telemetry_devices_reporting_minutes() == 0) c.set_telemetry_devices_reporting_minutes(5);
  if (c.telemetry_rollup_batch_windows() == 0) c.set_telemetry_rollup_batch_windows(20'000);
  if (c.fleet_reference_windows() == 0) c.set_fleet_reference_windows(100);
  if (c.fleet_reference_interval_seconds() == 0) c.set_fleet_reference_interval_seconds(10);
  if (c.drift_range_minutes() == 0) c.set_drift_range_minutes(60);
  if (c.max_capture_bytes() == 0) c.set_max_capture_bytes(1024 * 1024);
  if (c.capture_retention_days() == 0) c.set_capture_retention_days(30);
  return c;
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const v1::ServerConfig& config,
                                                      const Clock& clock) {
  if (config.database_url().empty()) {
    return absl::InvalidArgumentError(
        "database_url is required (--database-url or EDGEFLEET_DATABASE_URL)");
  }
  if (config.max_capture_bytes() > RequestLimits::kCaptureRecordBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_capture_bytes is ", config.max_capture_bytes(), ", at most ",
                     RequestLimits::kCaptureRecordBytes, " (what one device message holds)"));
  }
  auto server = std::make_unique<ServerImpl>(WithDefaults(config), clock);
  if (auto s = server->Init(); !s.ok()) return s;
  return server;
}

}  // namespace edgefleet::server
