// Differential updates on the server, against real PostgreSQL and a real filesystem artifact
// store: patches are computed once per pair in the background, offered only when they are ready
// and smaller, survive a restart, and reach devices through check-in and artifact access.
#include "server/patches/patch_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <thread>
#include <utility>

#include "common/crypto/sha256.h"
#include "common/delta/delta.h"
#include "server/api/admin_api.h"
#include "server/api/device_api.h"
#include "server/store/database.h"
#include "server/store/event_repo.h"
#include "server/store/last_seen_batcher.h"
#include "server/store/patch_repo.h"
#include "server/store/telemetry_repo.h"
#include "tests/support/onnx_bytes.h"
#include "tests/support/test_database.h"

namespace edgefleet::server {
namespace {

namespace fs = std::filesystem;

constexpr size_t kModelBytes = 1 << 20;

// Deterministic pseudo-random bytes.
std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

// `base` with a few hundred bytes changed in a few places: a fine-tuned model.
std::string Retrained(const std::string& base) {
  std::string out = base;
  std::mt19937 rng(99);
  for (int block = 0; block < 4; ++block) {
    size_t at = rng() % (out.size() - 100);
    for (size_t i = 0; i < 80; ++i) out[at + i] = static_cast<char>(rng());
  }
  return out;
}

// Raw float32 weights, and the same weights fine-tuned (each scaled by 1 + N(0, 1e-3)): a file
// pair for the tensor codec (same length, aligned by offset).
std::pair<std::string, std::string> FineTunedWeights(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> weight(0.0f, 0.05f), change(0.0f, 1e-3f);
  std::string old_bytes(count * sizeof(float), '\0'), new_bytes = old_bytes;
  for (size_t i = 0; i < count; ++i) {
    const float w = weight(rng);
    const float tuned = w * (1.0f + change(rng));
    std::memcpy(old_bytes.data() + i * sizeof(float), &w, sizeof(float));
    std::memcpy(new_bytes.data() + i * sizeof(float), &tuned, sizeof(float));
  }
  return {old_bytes, new_bytes};
}

class PatchServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto database = Database::Open({.url = db_.url()});
    ASSERT_TRUE(database.ok()) << database.status();
    database_ = *std::move(database);
    ASSERT_TRUE(database_->Migrate().ok());
    dir_ =
        fs::path(::testing::TempDir()) /
        ("patches_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    artifacts_ = MakeFilesystemArtifactStore(dir_.string());
    repo_ = std::make_unique<PatchRepo>(*database_);
    metrics_ = std::make_unique<ServerMetrics>(registry_);
    old_ = RandomBytes(kModelBytes, 1);
    new_ = Retrained(old_);
  }

  void TearDown() override {
    service_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Stores `bytes` the way an upload does; returns the raw digest.
  std::string Store(const std::string& bytes) {
    auto writer = artifacts_->BeginUpload(bytes.size());
    EXPECT_TRUE(writer.ok()) << writer.status();
    if (!writer.ok()) return "";
    // In pieces, like a streamed upload.
    for (size_t at = 0; at < bytes.size(); at += 100000) {
      EXPECT_TRUE((*writer)->Append(std::string_view(bytes).substr(at, 100000)).ok());
    }
    auto info = (*writer)->Commit();
    EXPECT_TRUE(info.ok()) << info.status();
    if (!info.ok()) return "";
    EXPECT_EQ(info->sha256, crypto::Sha256Bytes(bytes));
    return info->sha256;
  }

  std::string ReadBlob(const std::string& sha256) {
    auto reader = artifacts_->Open(sha256);
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return "";
    std::string out;
    while (true) {
      auto chunk = (*reader)->ReadAt(out.size(), 1 << 16);
      EXPECT_TRUE(chunk.ok()) << chunk.status();
      if (!chunk.ok() || chunk->empty()) return out;
      out += *chunk;
    }
  }

  void StartService() {
    service_ = std::make_unique<PatchService>(*database_, *repo_, *artifacts_, *metrics_,
                                              PatchServiceOptions{.workers = 2});
    ASSERT_TRUE(service_->Start().ok());
  }

  double Computed(const std::string& result) {
    return metrics_->patches_computed.Add({{"result", result}}).Value();
  }

  std::optional<v1::PatchOffer> OfferFor(const std::string& from, const std::string& to,
                                         uint64_t to_size,
                                         uint32_t decoder_version = delta::kDecoderFormatVersion) {
    auto offer = service_->Offer(from, to, to_size, decoder_version);
    EXPECT_TRUE(offer.ok()) << offer.status();
    return offer.ok() ? *offer : std::nullopt;
  }

  // The offered patch, fetched from the store, rebuilds exactly `want` from `base`.
  void ExpectPatchRebuilds(const v1::PatchOffer& offer, const std::string& base,
                           const std::string& want) {
    std::string patch = ReadBlob(offer.patch_sha256());
    EXPECT_EQ(patch.size(), offer.patch_size_bytes());
    EXPECT_EQ(crypto::Sha256Bytes(patch), offer.patch_sha256());
    auto info = delta::Inspect(patch);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(delta::CodecName(info->codec), offer.codec());
    delta::StringSink out;
    delta::ApplyOptions options;
    options.expected_new_size_bytes = want.size();
    ASSERT_TRUE(delta::Apply(base, patch, out, options).ok());
    EXPECT_TRUE(out.data() == want) << "patched output differs from the new version";
  }

  test::TestDatabase db_;
  std::unique_ptr<Database> database_;
  fs::path dir_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<PatchRepo> repo_;
  metrics::Registry registry_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<PatchService> service_;
  std::string old_, new_;
};

TEST_F(PatchServiceTest, TensorPatchesAreOfferedOnlyToAgentsThatDecodeTheirFormat) {
  StartService();
  const auto [old_weights, new_weights] = FineTunedWeights(kModelBytes / 4, 7);
  const std::string from = Store(old_weights);
  const std::string to = Store(new_weights);
  const std::string bytes_from = Store(old_);
  const std::string bytes_to = Store(new_);
  ASSERT_TRUE(service_->Request(from, to).ok());
  ASSERT_TRUE(service_->Request(bytes_from, bytes_to).ok());
  service_->WaitIdle();

  std::optional<v1::PatchOffer> tensor = OfferFor(from, to, new_weights.size());
  ASSERT_TRUE(tensor.has_value());
  EXPECT_EQ(tensor->codec(), "tensor");
  ExpectPatchRebuilds(*tensor, old_weights, new_weights);
  // An agent that predates the current tensor format (or reports none) gets the full artifact
  // rather than a patch it would fail to decode and then download the artifact anyway.
  for (uint32_t older : {0u, delta::kDecoderFormatVersion - 1}) {
    EXPECT_FALSE(OfferFor(from, to, new_weights.size(), older).has_value()) << older;
  }
  // Byte-matching patches have never changed format: every agent gets them.
  std::optional<v1::PatchOffer> matched = OfferFor(bytes_from, bytes_to, new_.size(), 0);
  ASSERT_TRUE(matched.has_value());
  EXPECT_NE(matched->codec(), "tensor");
}

TEST_F(PatchServiceTest, SmallChangeGivesASmallPatchThatRebuildsTheNewVersion) {
  StartService();
  const std::string from = Store(old_);
  const std::string to = Store(new_);
  ASSERT_TRUE(service_->Request(from, to).ok());
  service_->WaitIdle();

  auto offer = OfferFor(from, to, new_.size());
  ASSERT_TRUE(offer.has_value()) << "a ready patch is offered";
  EXPECT_EQ(offer->from_artifact_sha256(), from);
  EXPECT_FALSE(offer->codec().empty());
  EXPECT_TRUE(delta::ParseCodec(offer->codec()).ok()) << offer->codec();
  // A few hundred changed bytes out of a megabyte: the patch is a small fraction of the file.
  EXPECT_LT(offer->patch_size_bytes(), new_.size() / 10);
  ExpectPatchRebuilds(*offer, old_, new_);
  EXPECT_EQ(Computed("ready"), 1);
  EXPECT_EQ(Computed("failed"), 0);
  EXPECT_EQ(metrics_->patch_compute_seconds.Add({}).Collect().count, 1u);
  EXPECT_EQ(db_.QueryValue("SELECT state FROM patches"), "ready");

  // The offer is only made where the patch beats the full download.
  auto not_worth_it = OfferFor(from, to, offer->patch_size_bytes());
  EXPECT_FALSE(not_worth_it.has_value());
}

TEST_F(PatchServiceTest, EachPairIsComputedOnce) {
  StartService();
  const std::string from = Store(old_);
  const std::string to = Store(new_);
  ASSERT_TRUE(service_->Request(from, to).ok());
  ASSERT_TRUE(service_->Request(from, to).ok());  // e.g. a push, then a deployment
  service_->WaitIdle();
  ASSERT_TRUE(OfferFor(from, to, new_.size()).has_value());
  ASSERT_TRUE(service_->Request(from, to).ok());
  ASSERT_TRUE(OfferFor(from, to, new_.size()).has_value());
  service_->WaitIdle();
  EXPECT_EQ(Computed("ready"), 1);
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM patches"), "1");

  // A version is never patched into itself.
  ASSERT_TRUE(service_->Request(to, to).ok());
  EXPECT_FALSE(OfferFor(to, to, new_.size()).has_value());
  service_->WaitIdle();
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM patches"), "1");
}

TEST_F(PatchServiceTest, UnrelatedVersionsAreNotPatched) {
  StartService();
  const std::string from = Store(old_);
  const std::string unrelated = RandomBytes(kModelBytes, 2);
  const std::string to = Store(unrelated);
  ASSERT_TRUE(service_->Request(from, to).ok());
  service_->WaitIdle();
  EXPECT_EQ(Computed("not_smaller"), 1);
  EXPECT_EQ(Computed("ready"), 0);
  EXPECT_FALSE(OfferFor(from, to, unrelated.size()).has_value());
  EXPECT_EQ(db_.QueryValue("SELECT state FROM patches"), "not_smaller");
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM patches WHERE patch_sha256 IS NOT NULL"), "0");
  // Offering again, or restarting the server, does not compute it again.
  EXPECT_FALSE(OfferFor(from, to, unrelated.size()).has_value());
  service_.reset();
  StartService();
  service_->WaitIdle();
  EXPECT_EQ(Computed("not_smaller"), 1);
}

TEST_F(PatchServiceTest, MissingArtifactIsRecordedAsFailedAndNotOffered) {
  StartService();
  const std::string to = Store(new_);
  const std::string unknown = crypto::Sha256Bytes("never uploaded");
  ASSERT_TRUE(service_->Request(unknown, to).ok());
  service_->WaitIdle();
  EXPECT_EQ(Computed("failed"), 1);
  EXPECT_FALSE(OfferFor(unknown, to, new_.size()).has_value());
  EXPECT_EQ(db_.QueryValue("SELECT state FROM patches"), "failed");
  EXPECT_NE(db_.QueryValue("SELECT detail FROM patches"), "") << "the failure says why";
}

TEST_F(PatchServiceTest, OfferForAnUnknownPairQueuesItAndOffersItOnceReady) {
  StartService();
  const std::string from = Store(old_);
  const std::string to = Store(new_);
  EXPECT_FALSE(OfferFor(from, to, new_.size()).has_value()) << "nothing is ready yet";
  service_->WaitIdle();
  auto offer = OfferFor(from, to, new_.size());
  ASSERT_TRUE(offer.has_value());
  ExpectPatchRebuilds(*offer, old_, new_);
  EXPECT_EQ(Computed("ready"), 1);
}

TEST_F(PatchServiceTest, PendingPairLeftByARestartIsComputedByTheNextService) {
  const std::string from = Store(old_);
  const std::string to = Store(new_);
  // A previous run queued the pair and stopped before computing it.
  auto queued = database_->Transact("test", [&](Tx& tx) { return repo_->Enqueue(tx, from, to); });
  ASSERT_TRUE(queued.ok()) << queued.status();
  ASSERT_TRUE(*queued);
  EXPECT_EQ(db_.QueryValue("SELECT state FROM patches"), "pending");

  StartService();
  service_->WaitIdle();
  EXPECT_EQ(Computed("ready"), 1);
  EXPECT_EQ(db_.QueryValue("SELECT state FROM patches"), "ready");
  auto offer = OfferFor(from, to, new_.size());
  ASSERT_TRUE(offer.has_value());
  ExpectPatchRebuilds(*offer, old_, new_);
}

// What edgefleet_patches{state} and edgefleet_patch_oldest_pending_age_seconds read.
TEST_F(PatchServiceTest, BacklogCountsStatesAndAgesTheOldestPendingPair) {
  auto empty = repo_->Backlog();
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->by_state, (std::map<std::string, int64_t>{
                                 {"pending", 0}, {"ready", 0}, {"not_smaller", 0}, {"failed", 0}}));
  EXPECT_EQ(empty->oldest_pending_age_seconds, 0);

  const std::string from = Store(old_);
  const std::string to = Store(new_);
  ASSERT_TRUE(
      database_->Transact("test", [&](Tx& tx) { return repo_->Enqueue(tx, from, to); }).ok());
  // Queued two hours ago and never computed (no service ran).
  db_.Exec("UPDATE patches SET created_at = now() - interval '2 hours'");
  auto waiting = repo_->Backlog();
  ASSERT_TRUE(waiting.ok()) << waiting.status();
  EXPECT_EQ(waiting->by_state.at("pending"), 1);
  EXPECT_GE(waiting->oldest_pending_age_seconds, 7200);
  EXPECT_LT(waiting->oldest_pending_age_seconds, 7200 + 600);

  StartService();
  service_->WaitIdle();
  auto done = repo_->Backlog();
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->by_state, (std::map<std::string, int64_t>{
                                {"pending", 0}, {"ready", 1}, {"not_smaller", 0}, {"failed", 0}}));
  EXPECT_EQ(done->oldest_pending_age_seconds, 0);
}

TEST_F(PatchServiceTest, RequestBeforeStartIsComputedOnce) {
  const std::string from = Store(old_);
  const std::string to = Store(new_);
  service_ = std::make_unique<PatchService>(*database_, *repo_, *artifacts_, *metrics_,
                                            PatchServiceOptions{.workers = 2});
  ASSERT_TRUE(service_->Request(from, to).ok());
  ASSERT_TRUE(service_->Start().ok());
  service_->WaitIdle();
  EXPECT_EQ(Computed("ready"), 1);
}

// --- replicas sharing the database and the artifact store ---

PatchServiceOptions ReplicaOptions(const std::string& owner) {
  return PatchServiceOptions{.workers = 2,
                             .lease = std::chrono::seconds(30),
                             .poll_interval = std::chrono::milliseconds(50),
                             .owner = owner};
}

// Both replicas restart while a pair is pending (its replica stopped before computing it): each
// used to queue every pending pair at start, so both computed it.
TEST_F(PatchServiceTest, TwoReplicasStartingWithAPendingPairComputeItOnce) {
  const std::string from = Store(old_);
  const std::string to = Store(new_);
  ASSERT_TRUE(
      database_->Transact("test", [&](Tx& tx) { return repo_->Enqueue(tx, from, to); }).ok());
  PatchService a(*database_, *repo_, *artifacts_, *metrics_, ReplicaOptions("replica-a"));
  PatchService b(*database_, *repo_, *artifacts_, *metrics_, ReplicaOptions("replica-b"));
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());
  a.WaitIdle();
  b.WaitIdle();
  EXPECT_EQ(Computed("ready"), 1);
  EXPECT_EQ(db_.QueryValue("SELECT state || ' ' || attempts FROM patches"), "ready 1");
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM patches WHERE lease_owner IS NOT NULL"), "0")
      << "a finished pair holds no lease";
}

// Both replicas asked for the same pair at once (their devices checked in together).
TEST_F(PatchServiceTest, ReplicasRequestingTheSamePairsAtOnceComputeEachOnce) {
  std::vector<std::pair<std::string, std::string>> pairs;
  for (uint32_t seed = 10; seed < 14; ++seed) {
    const std::string base = RandomBytes(kModelBytes / 4, seed);
    pairs.emplace_back(Store(base), Store(Retrained(base)));
  }
  PatchService a(*database_, *repo_, *artifacts_, *metrics_, ReplicaOptions("replica-a"));
  PatchService b(*database_, *repo_, *artifacts_, *metrics_, ReplicaOptions("replica-b"));
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());
  std::thread other([&] {
    for (const auto& [from, to] : pairs) EXPECT_TRUE(b.Request(from, to).ok());
  });
  for (const auto& [from, to] : pairs) EXPECT_TRUE(a.Request(from, to).ok());
  other.join();
  a.WaitIdle();
  b.WaitIdle();
  EXPECT_EQ(Computed("ready"), 4);
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM patches WHERE state = 'ready' AND attempts = 1"),
            "4");
}

// A replica died mid-computation: its lease keeps the pair from the others until it expires,
// then one of them computes it (the pair is not stuck pending forever).
TEST_F(PatchServiceTest, PairOfAReplicaThatDiedIsTakenOverWhenItsLeaseExpires) {
  const std::string from = Store(old_);
  const std::string to = Store(new_);
  ASSERT_TRUE(
      database_->Transact("test", [&](Tx& tx) { return repo_->Enqueue(tx, from, to); }).ok());
  db_.Exec(
      "UPDATE patches SET lease_owner = 'dead-replica', attempts = 1, "
      "lease_expires_at = now() + interval '1 hour'");
  // Started once the pair is leased: a worker polling in between would take it first.
  StartService();
  service_->WaitIdle();
  EXPECT_EQ(db_.QueryValue("SELECT state FROM patches"), "pending") << "the lease is still held";
  EXPECT_EQ(Computed("ready"), 0);

  db_.Exec("UPDATE patches SET lease_expires_at = now() - interval '1 second'");
  service_->WaitIdle();
  EXPECT_EQ(Computed("ready"), 1);
  EXPECT_EQ(db_.QueryValue("SELECT state || ' ' || attempts FROM patches"), "ready 2");
  auto offer = OfferFor(from, to, new_.size());
  ASSERT_TRUE(offer.has_value());
  ExpectPatchRebuilds(*offer, old_, new_);
}

TEST_F(PatchServiceTest, PairWhoseComputationsKeepDyingIsGivenUp) {
  const std::string from = Store(old_);
  const std::string to = Store(new_);
  ASSERT_TRUE(
      database_->Transact("test", [&](Tx& tx) { return repo_->Enqueue(tx, from, to); }).ok());
  db_.Exec(
      "UPDATE patches SET lease_owner = 'dead-replica', attempts = 3, "
      "lease_expires_at = now() - interval '1 second'");
  StartService();  // once the pair carries its history (see the test above)
  service_->WaitIdle();
  EXPECT_EQ(db_.QueryValue("SELECT state FROM patches"), "failed");
  EXPECT_THAT(db_.QueryValue("SELECT detail FROM patches"),
              ::testing::HasSubstr("abandoned after 3 attempts"));
  EXPECT_FALSE(OfferFor(from, to, new_.size()).has_value());
  EXPECT_EQ(Computed("ready"), 0);
}

// The store's side of the lease: only the holder records an outcome; a replica whose lease
// passed to another records nothing.
TEST_F(PatchServiceTest, OnlyTheLeaseHolderRecordsTheOutcome) {
  const std::string from = Store(old_);
  const std::string to = Store(new_);
  ASSERT_TRUE(
      database_->Transact("test", [&](Tx& tx) { return repo_->Enqueue(tx, from, to); }).ok());
  auto claim = [&](const std::string& owner) {
    return database_->Transact(
        "test", [&](Tx& tx) { return repo_->Claim(tx, owner, std::chrono::seconds(30), 3); });
  };
  auto slow = claim("slow");
  ASSERT_TRUE(slow.ok()) << slow.status();
  ASSERT_TRUE(slow->has_value());
  EXPECT_EQ((*slow)->attempts, 1);
  auto none = claim("other");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value()) << "a held lease is not claimed again";

  db_.Exec("UPDATE patches SET lease_expires_at = now() - interval '1 second'");
  auto other = claim("other");
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE(other->has_value());
  EXPECT_EQ((*other)->attempts, 2);

  auto renew = [&](const std::string& owner) {
    return database_->Transact("test", [&](Tx& tx) {
      return repo_->Renew(tx, from, to, owner, std::chrono::seconds(30));
    });
  };
  auto finish = [&](const std::string& owner, PatchRecord::State state) {
    PatchRecord record{from, to, state, "bytes", "", 0, 1.0, owner};
    return database_->Transact("test", [&](Tx& tx) { return repo_->Finish(tx, record, owner); });
  };
  EXPECT_FALSE(renew("slow").value_or(true));
  EXPECT_TRUE(renew("other").value_or(false));
  EXPECT_FALSE(finish("slow", PatchRecord::State::kFailed).value_or(true));
  EXPECT_TRUE(finish("other", PatchRecord::State::kNotSmaller).value_or(false));
  EXPECT_EQ(db_.QueryValue("SELECT state || ' ' || detail FROM patches"), "not_smaller other");
  EXPECT_FALSE(renew("other").value_or(true)) << "a finished pair has no lease";
}

// --- through the device API, as a device sees it ---

class PatchDeviceApiTest : public PatchServiceTest {
 protected:
  void SetUp() override {
    PatchServiceTest::SetUp();
    if (HasFatalFailure()) return;
    // Pushed versions must be ONNX: the same weights, inside a minimal model file.
    old_ = test::OnnxModelWith(old_);
    new_ = test::OnnxModelWith(new_);
    tokens_ = std::make_unique<EnrollmentTokenRepo>(*database_);
    devices_ = std::make_unique<DeviceRepo>(*database_);
    models_ = std::make_unique<ModelRepo>(*database_);
    deployments_ = std::make_unique<DeploymentRepo>(*database_);
    events_ = std::make_unique<EventRepo>(*database_);
    telemetry_ = std::make_unique<TelemetryRepo>();
    // Flushed by the tests that read last_seen.
    last_seen_ = std::make_unique<LastSeenBatcher>(*database_, *devices_, std::chrono::hours(1));
    audit_ = std::make_unique<AuditRepo>();
    api_tokens_ = std::make_unique<ApiTokenRepo>(*database_);
    StartService();
    admin_ = std::make_unique<AdminApi>(
        AdminRepos{*database_, *tokens_, *devices_, *models_, *deployments_, *audit_, *api_tokens_},
        *artifacts_, clock_, *metrics_, AdminApiOptions{},
        AdminServices{.patches = service_.get()});
    auto keys = crypto::GenerateEd25519KeyPair();
    ASSERT_TRUE(keys.ok());
    signer_ = *crypto::LoadEd25519Signer(keys->private_key_pem);
    device_api_ = std::make_unique<DeviceApi>(
        DeviceRepos{*database_, *devices_, *models_, *deployments_, *events_, *telemetry_,
                    *last_seen_},
        *artifacts_, *signer_, clock_, *metrics_, DeviceApiOptions{}, service_.get(), repo_.get());
  }

  v1::ModelVersion Push(const std::string& version, const std::string& bytes) {
    v1::PushModelMetadata metadata;
    metadata.set_model_name("detector");
    metadata.set_version(version);
    auto sent = std::make_shared<bool>(false);
    auto pushed = admin_->PushModel({"admin", v1::ROLE_ADMIN}, metadata,
                                    [&bytes, sent]() -> absl::StatusOr<std::optional<std::string>> {
                                      if (*sent) return std::optional<std::string>();
                                      *sent = true;
                                      return std::optional<std::string>(bytes);
                                    });
    EXPECT_TRUE(pushed.ok()) << pushed.status();
    return pushed.ok() ? *pushed : v1::ModelVersion();
  }

  void EnrollInBerlin(const std::string& id, const v1::Inventory& inventory = {}) {
    ASSERT_TRUE(database_
                    ->Transact("enroll",
                               [&](Tx& tx) {
                                 return devices_->Enroll(tx, id, {{"site", "berlin"}}, inventory,
                                                         "serial-" + id,
                                                         ToUnixSeconds(clock_.Now()));
                               })
                    .ok());
  }

  void Deploy(const std::string& version) {
    v1::CreateDeploymentRequest deploy;
    deploy.set_model_name("detector");
    deploy.set_version(version);
    deploy.set_label_selector("site=berlin");
    auto deployment = admin_->CreateDeployment({"admin", v1::ROLE_ADMIN}, deploy);
    ASSERT_TRUE(deployment.ok()) << deployment.status();
  }

  static v1::Inventory Serving(const v1::ModelVersion& version) {
    v1::Inventory inventory;
    auto* model = inventory.add_models();
    model->set_model_name(version.model_name());
    model->set_version(version.version());
    model->set_state(v1::MODEL_STATE_SERVING);
    model->set_artifact_sha256(version.artifact_sha256());
    inventory.set_patch_decoder_version(delta::kDecoderFormatVersion);
    return inventory;
  }

  v1::DesiredModel CheckIn(const std::string& device, const v1::Inventory& inventory) {
    v1::CheckInRequest request;
    *request.mutable_inventory() = inventory;
    auto answer = device_api_->CheckIn(device, "serial-" + device, request);
    EXPECT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(answer.ok() ? answer->desired_size() : 0, 1);
    return answer.ok() && answer->desired_size() == 1 ? answer->desired(0) : v1::DesiredModel();
  }

  FakeClock clock_;
  std::unique_ptr<EnrollmentTokenRepo> tokens_;
  std::unique_ptr<DeviceRepo> devices_;
  std::unique_ptr<ModelRepo> models_;
  std::unique_ptr<DeploymentRepo> deployments_;
  std::unique_ptr<EventRepo> events_;
  std::unique_ptr<TelemetryRepo> telemetry_;
  std::unique_ptr<LastSeenBatcher> last_seen_;
  std::unique_ptr<AuditRepo> audit_;
  std::unique_ptr<ApiTokenRepo> api_tokens_;
  std::unique_ptr<AdminApi> admin_;
  std::unique_ptr<crypto::Signer> signer_;
  std::unique_ptr<DeviceApi> device_api_;
};

TEST_F(PatchDeviceApiTest, DeviceServingTheOldVersionIsOfferedThePatchOnceReady) {
  const v1::ModelVersion v1 = Push("1", old_);
  const v1::ModelVersion v2 = Push("2", new_);
  EnrollInBerlin("cam-1");
  EnrollInBerlin("cam-2");
  Deploy("2");
  service_->WaitIdle();
  EXPECT_EQ(Computed("ready") + Computed("not_smaller") + Computed("failed"), 0)
      << "no device reported holding anything to patch from";

  // The first check-in that reveals v1 queues the computation; a later one carries the offer.
  v1::DesiredModel first = CheckIn("cam-1", Serving(v1));
  service_->WaitIdle();
  v1::DesiredModel desired = CheckIn("cam-1", Serving(v1));
  EXPECT_EQ(desired.metadata().version(), "2");
  ASSERT_TRUE(desired.has_patch());
  EXPECT_EQ(desired.patch().from_artifact_sha256(), v1.artifact_sha256());
  EXPECT_LT(desired.patch().patch_size_bytes(), v2.size_bytes());
  ExpectPatchRebuilds(desired.patch(), old_, new_);
  if (first.has_patch()) {
    EXPECT_EQ(first.patch().patch_sha256(), desired.patch().patch_sha256());
  }

  // A device without v1 gets only the full artifact; so does one that reports no digest.
  EXPECT_FALSE(CheckIn("cam-2", v1::Inventory()).has_patch());
  v1::Inventory no_digest = Serving(v1);
  no_digest.mutable_models(0)->clear_artifact_sha256();
  EXPECT_FALSE(CheckIn("cam-2", no_digest).has_patch());
  // A device already serving v2 is offered nothing to patch.
  EXPECT_FALSE(CheckIn("cam-2", Serving(v2)).has_patch());
  service_->WaitIdle();
  EXPECT_EQ(Computed("ready"), 1);

  // The patch is fetched like an artifact, and counted as one.
  auto stream = device_api_->OpenArtifact("cam-1", desired.patch().patch_sha256());
  ASSERT_TRUE(stream.ok()) << stream.status();
  EXPECT_STREQ(stream->kind, "patch");
  ASSERT_NE(stream->reader, nullptr);
  EXPECT_EQ(stream->reader->size_bytes(), desired.patch().patch_size_bytes());
  EXPECT_EQ(stream->saved_bytes, v2.size_bytes() - desired.patch().patch_size_bytes());
  auto head = stream->reader->ReadAt(0, 16);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(*head, ReadBlob(desired.patch().patch_sha256()).substr(0, 16));

  auto full = device_api_->OpenArtifact("cam-1", v2.artifact_sha256());
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_STREQ(full->kind, "full");
  EXPECT_EQ(full->reader->size_bytes(), v2.size_bytes());
}

TEST_F(PatchDeviceApiTest, DeploymentPrecomputesPatchesForWhatTargetsServe) {
  const v1::ModelVersion v1 = Push("1", old_);
  const v1::ModelVersion v2 = Push("2", new_);
  EnrollInBerlin("cam-1", Serving(v1));
  Deploy("2");
  service_->WaitIdle();
  EXPECT_EQ(Computed("ready"), 1) << "computed before the device asked";
  v1::DesiredModel desired = CheckIn("cam-1", Serving(v1));
  ASSERT_TRUE(desired.has_patch());
  ExpectPatchRebuilds(desired.patch(), old_, new_);
  service_->WaitIdle();
  EXPECT_EQ(Computed("ready"), 1);
}

TEST_F(PatchDeviceApiTest, OnlyArtifactsAndReadyPatchesCanBeFetched) {
  EnrollInBerlin("cam-1");
  const v1::ModelVersion v1 = Push("1", old_);
  Deploy("1");
  // In the store but neither a model version nor a ready patch (e.g. an abandoned upload).
  const std::string stray = Store(RandomBytes(1000, 5));
  EXPECT_EQ(device_api_->OpenArtifact("cam-1", stray).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(device_api_->OpenArtifact("cam-1", crypto::Sha256Bytes("nothing")).status().code(),
            absl::StatusCode::kNotFound);

  // A pair that is not worth patching leaves nothing fetchable behind.
  const v1::ModelVersion other = Push("3", test::OnnxModelWith(RandomBytes(kModelBytes, 3)));
  ASSERT_TRUE(service_->Request(v1.artifact_sha256(), other.artifact_sha256()).ok());
  service_->WaitIdle();
  EXPECT_EQ(Computed("not_smaller"), 1);
  EXPECT_EQ(db_.QueryValue("SELECT state FROM patches"), "not_smaller");
  EXPECT_EQ(db_.QueryValue("SELECT count(*) FROM patches WHERE patch_sha256 IS NOT NULL"), "0");

  auto full = device_api_->OpenArtifact("cam-1", v1.artifact_sha256());
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_STREQ(full->kind, "full");
}

}  // namespace
}  // namespace edgefleet::server
