// Tests of the agent's durable state: what survives a restart, rotation of installed versions,
// rollback protection, update progress, failed releases, the outbox and damaged files.
#include "agent/state/state_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace edgefleet::agent {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using UpdatePhase = StateStore::UpdatePhase;
using OutboxKind = StateStore::OutboxKind;

// The outbox table as schema v1 created it (the fake old databases below need it to migrate).
constexpr char kV1Outbox[] =
    "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
    "payload BLOB NOT NULL);";

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           (std::string("edgefleet-state-") + info->name() + "-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    db_path_ = (dir_ / "agent.db").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<StateStore> OpenStore() {
    auto store = StateStore::Open(db_path_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  static StateStore::InstalledVersion Version(const std::string& model, const std::string& v,
                                              uint64_t metadata_version) {
    StateStore::InstalledVersion iv;
    iv.model_name = model;
    iv.version = v;
    iv.artifact_sha256 = std::string(32, static_cast<char>(v.empty() ? 0 : v[0]));
    iv.artifact_sha256[0] = '\0';  // raw digests contain NUL bytes
    iv.path = "/models/" + model + "/" + v + ".onnx";
    iv.signed_manifest = std::string("manifest\0", 9) + v;
    iv.signature = "sig-" + v;
    iv.metadata_version = metadata_version;
    iv.metadata_proto = "proto-" + v;
    return iv;
  }

  fs::path dir_;
  std::string db_path_;
};

TEST_F(StateStoreTest, ReopenKeepsEverything) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->SetIdentity("dev-42").ok());
    ASSERT_TRUE(store->CommitVersion(Version("detector", "v1", 3)).ok());
    ASSERT_TRUE(store->SaveUpdate({"detector", "v2", "sha2", UpdatePhase::kStaged, "staged"}).ok());
    ASSERT_TRUE(
        store->SaveFailure({"detector", "v0", "sha0", 4, 2, 1'800'000'060, 7, "cannot load"}).ok());
    ASSERT_TRUE(store->Enqueue(OutboxKind::kUpdateEvent, "payload-1").ok());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->DeviceId().value_or(""), "dev-42");
  auto current = store->Current("detector");
  ASSERT_TRUE(current.ok() && current->has_value());
  const auto expected = Version("detector", "v1", 3);
  EXPECT_EQ((*current)->version, "v1");
  EXPECT_EQ((*current)->artifact_sha256, expected.artifact_sha256);
  EXPECT_EQ((*current)->signed_manifest, expected.signed_manifest);
  EXPECT_EQ((*current)->signature, expected.signature);
  EXPECT_EQ((*current)->path, expected.path);
  EXPECT_EQ((*current)->metadata_version, 3u);
  EXPECT_EQ((*current)->metadata_proto, expected.metadata_proto);
  EXPECT_EQ(store->HighestMetadataVersion("detector").value_or(0), 3u);
  auto update = store->LoadUpdate("detector");
  ASSERT_TRUE(update.ok() && update->has_value());
  EXPECT_EQ((*update)->phase, UpdatePhase::kStaged);
  auto failure = store->LoadFailure("detector");
  ASSERT_TRUE(failure.ok() && failure->has_value());
  EXPECT_EQ((*failure)->attempts, 2u);
  EXPECT_EQ((*failure)->next_attempt_unix, 1'800'000'060);
  EXPECT_EQ((*failure)->reason_code, 7);
  auto items = store->Peek(OutboxKind::kUpdateEvent, 10);
  ASSERT_TRUE(items.ok());
  ASSERT_EQ(items->size(), 1u);
  EXPECT_EQ((*items)[0].payload, "payload-1");
}

TEST_F(StateStoreTest, NotEnrolledIsNotFound) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->DeviceId().status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store->SetIdentity("a").ok());
  ASSERT_TRUE(store->SetIdentity("b").ok());
  EXPECT_EQ(store->DeviceId().value_or(""), "b");
}

TEST_F(StateStoreTest, CommitRotatesCurrentAndPreviousAndDropsOlder) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto r1 = store->CommitVersion(Version("m", "v1", 1));
  ASSERT_TRUE(r1.ok());
  EXPECT_FALSE(r1->has_value());
  auto r2 = store->CommitVersion(Version("m", "v2", 2));
  ASSERT_TRUE(r2.ok());
  EXPECT_FALSE(r2->has_value());
  EXPECT_EQ((*store->Current("m"))->version, "v2");
  EXPECT_EQ((*store->Previous("m"))->version, "v1");

  auto r3 = store->CommitVersion(Version("m", "v3", 3));
  ASSERT_TRUE(r3.ok());
  ASSERT_TRUE(r3->has_value());
  EXPECT_EQ((*r3)->version, "v1");
  EXPECT_EQ((*r3)->path, "/models/m/v1.onnx");  // the caller deletes these files
  EXPECT_EQ((*store->Current("m"))->version, "v3");
  EXPECT_EQ((*store->Previous("m"))->version, "v2");

  // Other models are untouched and listed.
  ASSERT_TRUE(store->CommitVersion(Version("other", "x1", 1)).ok());
  auto all = store->AllCurrent();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].model_name, "m");
  EXPECT_EQ((*all)[0].version, "v3");
  EXPECT_EQ((*all)[1].model_name, "other");
}

TEST_F(StateStoreTest, RecommitAndCommitOfPreviousDoNotLoseVersions) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CommitVersion(Version("m", "v1", 1)).ok());
  ASSERT_TRUE(store->CommitVersion(Version("m", "v2", 2)).ok());
  // Committing the current version again updates in place and keeps the previous one.
  auto same = Version("m", "v2", 2);
  same.path = "/moved/v2.onnx";
  auto r = store->CommitVersion(same);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  EXPECT_EQ((*store->Current("m"))->path, "/moved/v2.onnx");
  EXPECT_EQ((*store->Previous("m"))->version, "v1");
  // Committing the previous version swaps the two; nothing is dropped.
  r = store->CommitVersion(Version("m", "v1", 1));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  EXPECT_EQ((*store->Current("m"))->version, "v1");
  EXPECT_EQ((*store->Previous("m"))->version, "v2");
}

TEST_F(StateStoreTest, RestorePreviousDropsCurrent) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->RestorePrevious("m").status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store->CommitVersion(Version("m", "v1", 1)).ok());
  ASSERT_TRUE(store->CommitVersion(Version("m", "v2", 2)).ok());
  auto dropped = store->RestorePrevious("m");
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  ASSERT_TRUE(dropped->has_value());
  EXPECT_EQ((*dropped)->version, "v2");
  EXPECT_EQ((*store->Current("m"))->version, "v1");
  EXPECT_FALSE(store->Previous("m")->has_value());
  // Restoring does not lower rollback protection.
  EXPECT_EQ(store->HighestMetadataVersion("m").value_or(0), 2u);
}

TEST_F(StateStoreTest, MetadataVersionNeverDecreases) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->HighestMetadataVersion("m").value_or(99), 0u);
  ASSERT_TRUE(store->RaiseMetadataVersion("m", 5).ok());
  ASSERT_TRUE(store->RaiseMetadataVersion("m", 3).ok());
  EXPECT_EQ(store->HighestMetadataVersion("m").value_or(0), 5u);
  // A commit with an older metadata version does not lower it either, nor does dropping rows.
  ASSERT_TRUE(store->CommitVersion(Version("m", "v1", 2)).ok());
  ASSERT_TRUE(store->CommitVersion(Version("m", "v2", 9)).ok());
  ASSERT_TRUE(store->CommitVersion(Version("m", "v3", 4)).ok());
  ASSERT_TRUE(store->CommitVersion(Version("m", "v4", 4)).ok());
  EXPECT_EQ(store->HighestMetadataVersion("m").value_or(0), 9u);
  store.reset();
  store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->HighestMetadataVersion("m").value_or(0), 9u);
  EXPECT_EQ(store->HighestMetadataVersion("other").value_or(99), 0u);
}

TEST_F(StateStoreTest, UpdatePhasePersistsEveryStep) {
  const UpdatePhase phases[] = {
      UpdatePhase::kIdle,      UpdatePhase::kFetching,    UpdatePhase::kVerifying,
      UpdatePhase::kStaged,    UpdatePhase::kActivating,  UpdatePhase::kProbation,
      UpdatePhase::kCommitted, UpdatePhase::kRollingBack, UpdatePhase::kFailed};
  for (UpdatePhase phase : phases) {
    {
      auto store = OpenStore();
      ASSERT_NE(store, nullptr);
      ASSERT_TRUE(
          store->SaveUpdate({"m", "v7", std::string("\0\x01", 2), phase, "step detail", 12, 1, 7})
              .ok());
    }
    auto store = OpenStore();  // as after a crash
    ASSERT_NE(store, nullptr);
    auto loaded = store->LoadUpdate("m");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ASSERT_TRUE(loaded->has_value());
    EXPECT_EQ((*loaded)->phase, phase) << UpdatePhaseName(phase);
    EXPECT_EQ((*loaded)->version, "v7");
    EXPECT_EQ((*loaded)->artifact_sha256, std::string("\0\x01", 2));
    EXPECT_EQ((*loaded)->detail, "step detail");
    EXPECT_EQ((*loaded)->metadata_version, 12u);
    EXPECT_EQ((*loaded)->restarts, 1u);
    EXPECT_EQ((*loaded)->reason_code, 7);
  }
  auto store = OpenStore();
  ASSERT_TRUE(store->SaveUpdate({"a", "v1", "sha", UpdatePhase::kProbation, "", 3, 0}).ok());
  auto all = store->AllUpdates();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].model_name, "a");
  EXPECT_EQ((*all)[0].phase, UpdatePhase::kProbation);
  EXPECT_EQ((*all)[1].model_name, "m");
  ASSERT_TRUE(store->ClearUpdate("m").ok());
  auto loaded = store->LoadUpdate("m");
  ASSERT_TRUE(loaded.ok());
  EXPECT_FALSE(loaded->has_value());
}

TEST_F(StateStoreTest, OneFailureRecordPerModelReplacedAndCleared) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(store->LoadFailure("m").value_or(std::nullopt).has_value());
  const std::string raw("\0sha", 4);
  ASSERT_TRUE(store->SaveFailure({"m", "v1", raw, 3, 1, 100, 4, "digest mismatch"}).ok());
  ASSERT_TRUE(store->SaveFailure({"m", "v1", raw, 3, 2, 160, 4, "again"}).ok());
  ASSERT_TRUE(store->SaveFailure({"a", "v9", "sha", 1, 5, 0, 7, "load"}).ok());
  auto m = store->LoadFailure("m");
  ASSERT_TRUE(m.ok() && m->has_value());
  EXPECT_EQ((*m)->version, "v1");
  EXPECT_EQ((*m)->artifact_sha256, raw);
  EXPECT_EQ((*m)->metadata_version, 3u);
  EXPECT_EQ((*m)->attempts, 2u);
  EXPECT_EQ((*m)->next_attempt_unix, 160);
  EXPECT_EQ((*m)->detail, "again");
  auto all = store->AllFailures();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].model_name, "a");
  EXPECT_EQ((*all)[1].model_name, "m");
  ASSERT_TRUE(store->ClearFailure("m").ok());
  EXPECT_FALSE(store->LoadFailure("m").value_or(std::nullopt).has_value());
  EXPECT_EQ(store->AllFailures()->size(), 1u);
}

// Schema v1 skipped a refused release for good (failed_releases); v2 gives it another attempt
// and keeps reporting it until then.
TEST_F(StateStoreTest, MigrationFromV1GivesRefusedReleasesAnotherAttempt) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
    const std::string v1 =
        "CREATE TABLE updates (model_name TEXT PRIMARY KEY, version TEXT NOT NULL, "
        "artifact_sha256 BLOB NOT NULL, phase TEXT NOT NULL, detail TEXT NOT NULL);"
        "CREATE TABLE failed_releases (model_name TEXT NOT NULL, version TEXT NOT NULL, "
        "artifact_sha256 BLOB NOT NULL, reason_code INTEGER NOT NULL, detail TEXT NOT NULL, "
        "PRIMARY KEY (model_name, version, artifact_sha256));" +
        std::string(kV1Outbox) +
        "INSERT INTO failed_releases VALUES ('m', 'v2', x'00ff', 4, 'digest mismatch');"
        "PRAGMA user_version = 1;";
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, v1.c_str(), nullptr, nullptr, &error), SQLITE_OK) << error;
    sqlite3_free(error);
    sqlite3_close(db);
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto failure = store->LoadFailure("m");
  ASSERT_TRUE(failure.ok() && failure->has_value()) << failure.status();
  EXPECT_EQ((*failure)->version, "v2");
  EXPECT_EQ((*failure)->artifact_sha256, std::string("\0\xff", 2));
  EXPECT_EQ((*failure)->attempts, 0u) << "not counted: the release is tried again";
  EXPECT_EQ((*failure)->next_attempt_unix, 0);
  EXPECT_EQ((*failure)->reason_code, 4);
  EXPECT_EQ((*failure)->detail, "digest mismatch");
}

// Schema v2 saved steps as "Fetch", "Activate", ...; v3 keeps every record, under the names of
// the lifecycle's states, with no restarts counted.
TEST_F(StateStoreTest, MigrationFromV2KeepsUpdateRecordsUnderTheNewStateNames) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
    const std::string v2 =
        "CREATE TABLE updates (model_name TEXT PRIMARY KEY, version TEXT NOT NULL, "
        "artifact_sha256 BLOB NOT NULL, phase TEXT NOT NULL, detail TEXT NOT NULL);" +
        std::string(kV1Outbox) +
        "INSERT INTO updates VALUES ('a', 'v1', x'01', 'Fetch', '');"
        "INSERT INTO updates VALUES ('b', 'v2', x'02', 'Activate', 'loading');"
        "INSERT INTO updates VALUES ('c', 'v3', x'03', 'Commit', '');"
        "INSERT INTO updates VALUES ('d', 'v4', x'04', 'Failed', 'digest');"
        "PRAGMA user_version = 2;";
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, v2.c_str(), nullptr, nullptr, &error), SQLITE_OK) << error;
    sqlite3_free(error);
    sqlite3_close(db);
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto all = store->AllUpdates();
  ASSERT_TRUE(all.ok()) << all.status();
  std::vector<std::pair<std::string, UpdatePhase>> phases;
  for (const auto& r : *all) phases.emplace_back(r.model_name, r.phase);
  EXPECT_THAT(phases, ::testing::ElementsAre(std::pair("a", UpdatePhase::kFetching),
                                             std::pair("b", UpdatePhase::kActivating),
                                             std::pair("c", UpdatePhase::kCommitted),
                                             std::pair("d", UpdatePhase::kFailed)));
  EXPECT_EQ((*all)[1].detail, "loading");
  EXPECT_EQ((*all)[1].artifact_sha256, "\x02");
  EXPECT_EQ((*all)[1].restarts, 0u);
  EXPECT_EQ((*all)[1].metadata_version, 0u);
}

TEST_F(StateStoreTest, DropCurrentKeepsPreviousAndRollbackProtection) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CommitVersion(Version("m", "v1", 1)).ok());
  ASSERT_TRUE(store->CommitVersion(Version("m", "v2", 2)).ok());
  auto dropped = store->DropCurrent("m");
  ASSERT_TRUE(dropped.ok() && dropped->has_value());
  EXPECT_EQ((*dropped)->version, "v2");
  EXPECT_FALSE(store->Current("m").value_or(std::nullopt).has_value());
  EXPECT_EQ(store->Previous("m").value_or(std::nullopt)->version, "v1");
  EXPECT_EQ(store->HighestMetadataVersion("m").value_or(0), 2u);
  auto again = store->DropCurrent("m");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
}

std::array<StateStore::OutboxKindStats, 3> Stats(StateStore& store) {
  auto stats = store.OutboxStats();
  EXPECT_TRUE(stats.ok()) << stats.status();
  return stats.value_or(std::array<StateStore::OutboxKindStats, 3>{});
}

const StateStore::OutboxKindStats& Of(const std::array<StateStore::OutboxKindStats, 3>& stats,
                                      OutboxKind kind) {
  return stats[static_cast<size_t>(kind)];
}

TEST_F(StateStoreTest, OutboxKeepsOrderPerKindAndAckRemovesExactlyTheAcknowledged) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(store
                    ->Enqueue(i % 2 ? OutboxKind::kTelemetry : OutboxKind::kUpdateEvent,
                              "p" + std::to_string(i))
                    .ok());
  }
  auto events = store->Peek(OutboxKind::kUpdateEvent, 10);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].payload, "p0");
  EXPECT_EQ((*events)[1].payload, "p2");
  EXPECT_EQ((*events)[0].kind, OutboxKind::kUpdateEvent);
  EXPECT_LT((*events)[0].id, (*events)[1].id);
  auto telemetry = store->Peek(OutboxKind::kTelemetry, 2);
  ASSERT_TRUE(telemetry.ok());
  ASSERT_EQ(telemetry->size(), 2u);
  EXPECT_EQ((*telemetry)[0].payload, "p1");
  // Peek does not consume.
  EXPECT_EQ(store->Peek(OutboxKind::kTelemetry, 10)->size(), 3u);
  // Acknowledging the second telemetry item removes it alone: an item sent later but
  // acknowledged earlier leaves the older unacknowledged ones in place.
  ASSERT_TRUE(store->Ack({(*telemetry)[1].id}).ok());
  auto rest = store->Peek(OutboxKind::kTelemetry, 10);
  ASSERT_EQ(rest->size(), 2u);
  EXPECT_EQ((*rest)[0].payload, "p1");
  EXPECT_EQ((*rest)[1].payload, "p5");
  EXPECT_EQ(store->Peek(OutboxKind::kUpdateEvent, 10)->size(), 3u);
  // Ids are never reused: acknowledging everything then enqueuing yields a larger id.
  std::vector<int64_t> all{(*rest)[0].id, (*rest)[1].id};
  for (const auto& e : *events) all.push_back(e.id);
  ASSERT_TRUE(store->Ack(all).ok());
  ASSERT_TRUE(store->Enqueue(OutboxKind::kUpdateEvent, "late").ok());
  auto late = store->Peek(OutboxKind::kUpdateEvent, 10);
  ASSERT_EQ(late->size(), 1u);
  EXPECT_GT((*late)[0].id, (*rest)[1].id);
}

TEST_F(StateStoreTest, OutboxOverBudgetDropsOldestCapturesThenTelemetryButNeverEvents) {
  auto opened = StateStore::Open(db_path_, {.outbox_max_bytes = 1000});
  ASSERT_TRUE(opened.ok()) << opened.status();
  StateStore& store = **opened;
  const std::string hundred(100, 'x');
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store.Enqueue(OutboxKind::kUpdateEvent, hundred).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store.Enqueue(OutboxKind::kCapture, hundred).ok());
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(
        store.Enqueue(OutboxKind::kTelemetry, "t" + std::to_string(i) + hundred.substr(2)).ok());
  }
  auto stats = Stats(store);
  EXPECT_EQ(Of(stats, OutboxKind::kCapture).items + Of(stats, OutboxKind::kTelemetry).items +
                Of(stats, OutboxKind::kUpdateEvent).items,
            10u)
      << "exactly at the budget: nothing dropped";

  // Over budget: the oldest capture goes first.
  ASSERT_TRUE(store.Enqueue(OutboxKind::kTelemetry, "t4" + hundred.substr(2)).ok());
  stats = Stats(store);
  EXPECT_EQ(Of(stats, OutboxKind::kCapture).items, 2u);
  EXPECT_EQ(Of(stats, OutboxKind::kCapture).dropped, 1u);
  // Captures gone, then the oldest telemetry; events stay even when they alone exceed it.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(store.Enqueue(OutboxKind::kUpdateEvent, hundred).ok());
  stats = Stats(store);
  EXPECT_EQ(Of(stats, OutboxKind::kUpdateEvent).items, 13u);
  EXPECT_EQ(Of(stats, OutboxKind::kUpdateEvent).dropped, 0u);
  EXPECT_EQ(Of(stats, OutboxKind::kCapture).items, 0u);
  EXPECT_EQ(Of(stats, OutboxKind::kTelemetry).items, 0u);
  EXPECT_EQ(Of(stats, OutboxKind::kTelemetry).dropped, 5u);
  EXPECT_EQ(Of(stats, OutboxKind::kCapture).dropped, 3u);
  EXPECT_EQ(Of(stats, OutboxKind::kUpdateEvent).bytes, 1300u);
  // A telemetry window that cannot fit next to the events is dropped at once, and counted.
  ASSERT_TRUE(store.Enqueue(OutboxKind::kTelemetry, hundred).ok());
  EXPECT_EQ(Of(Stats(store), OutboxKind::kTelemetry).dropped, 6u);
}

TEST_F(StateStoreTest, OutboxDropsOldestTelemetryFirstAndCountsSurviveARestart) {
  {
    auto opened = StateStore::Open(db_path_, {.outbox_max_bytes = 300});
    ASSERT_TRUE(opened.ok()) << opened.status();
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(
          (*opened)
              ->Enqueue(OutboxKind::kTelemetry, "w" + std::to_string(i) + std::string(98, '.'))
              .ok());
    }
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto kept = store->Peek(OutboxKind::kTelemetry, 10);
  ASSERT_TRUE(kept.ok());
  ASSERT_EQ(kept->size(), 3u);
  EXPECT_EQ((*kept)[0].payload.substr(0, 2), "w2") << "the newest windows are kept";
  EXPECT_EQ(Of(Stats(*store), OutboxKind::kTelemetry).dropped, 2u);
}

TEST_F(StateStoreTest, ItemsRefusedForGoodLeaveTheOutboxCountedOnceAndTheCountSurvivesARestart) {
  {
    auto opened = StateStore::Open(db_path_, {.outbox_max_bytes = 300});
    ASSERT_TRUE(opened.ok()) << opened.status();
    StateStore& store = **opened;
    for (int i = 0; i < 4; ++i) {
      ASSERT_TRUE(store.Enqueue(OutboxKind::kTelemetry, std::string(98, '.')).ok());
    }
    ASSERT_TRUE(store.Enqueue(OutboxKind::kUpdateEvent, "event").ok());
    auto held = store.Peek(OutboxKind::kTelemetry, 10);
    ASSERT_TRUE(held.ok());
    ASSERT_EQ(held->size(), 3u) << "one was dropped to stay within 300 bytes";
    auto event = store.Peek(OutboxKind::kUpdateEvent, 1);
    ASSERT_TRUE(event.ok() && event->size() == 1u);
    // An event's id is not a telemetry item: ignored, not counted, not removed.
    ASSERT_TRUE(store.AckRefused(OutboxKind::kTelemetry, {(*held)[0].id, (*event)[0].id}).ok());
    ASSERT_TRUE(store.AckRefused(OutboxKind::kTelemetry, {(*held)[0].id}).ok())
        << "a repeat counts nothing";
    EXPECT_EQ(Of(Stats(store), OutboxKind::kTelemetry).refused, 1u);
    EXPECT_EQ(Of(Stats(store), OutboxKind::kTelemetry).items, 2u);
    EXPECT_EQ(Of(Stats(store), OutboxKind::kUpdateEvent).items, 1u);
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Of(Stats(*store), OutboxKind::kTelemetry).refused, 1u);
  EXPECT_EQ(Of(Stats(*store), OutboxKind::kTelemetry).dropped, 1u) << "drops and refusals apart";
  EXPECT_EQ(Of(Stats(*store), OutboxKind::kUpdateEvent).refused, 0u);
}

TEST_F(StateStoreTest, OutboxStreamIdIsStableAndDiffersBetweenDatabases) {
  uint64_t first = 0;
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    auto id = store->OutboxStreamId();
    ASSERT_TRUE(id.ok()) << id.status();
    first = *id;
  }
  {
    auto store = OpenStore();
    EXPECT_EQ(store->OutboxStreamId().value_or(0), first) << "a restart keeps the stream";
  }
  fs::remove(db_path_);
  auto fresh = OpenStore();
  ASSERT_NE(fresh, nullptr);
  EXPECT_NE(fresh->OutboxStreamId().value_or(first), first)
      << "a wiped state starts a new stream, so its ids cannot collide with the old ones";
}

// v3's outbox held events and telemetry without sizes: v4 keeps them, sized and in order.
TEST_F(StateStoreTest, MigrationFromV3KeepsQueuedItemsWithTheirSizes) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
    const std::string v3 = std::string(kV1Outbox) +
                           "INSERT INTO outbox (kind, payload) VALUES ('update_event', 'e1');"
                           "INSERT INTO outbox (kind, payload) VALUES ('update_event', 'e22');"
                           "PRAGMA user_version = 3;";
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, v3.c_str(), nullptr, nullptr, &error), SQLITE_OK) << error;
    sqlite3_free(error);
    sqlite3_close(db);
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto events = store->Peek(OutboxKind::kUpdateEvent, 10);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[1].payload, "e22");
  EXPECT_EQ(Of(Stats(*store), OutboxKind::kUpdateEvent).bytes, 5u);
  EXPECT_TRUE(store->OutboxStreamId().ok());
}

TEST_F(StateStoreTest, CorruptFileIsAClearError) {
  {
    std::ofstream f(db_path_, std::ios::binary);
    f << std::string(8192, 'x');
  }
  auto store = StateStore::Open(db_path_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(db_path_));
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("not a database"));
}

TEST_F(StateStoreTest, MissingDirectoryIsAnError) {
  auto store = StateStore::Open((dir_ / "no-such-dir" / "agent.db").string());
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("no-such-dir"));
}

TEST_F(StateStoreTest, DatabaseFromNewerAgentIsRefused) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
  }
  {
    // Pretend a newer agent migrated the file, by reopening and bumping user_version via a
    // raw write of the header field (offset 60, big-endian).
    std::fstream f(db_path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(60);
    const char v[4] = {0, 0, 0, 99};
    f.write(v, 4);
  }
  auto store = StateStore::Open(db_path_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("newer"));
}

TEST_F(StateStoreTest, ConcurrentUseFromTwoThreadsIsSafe) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  constexpr int kPerThread = 200;
  auto writer = [&](OutboxKind kind) {
    for (int i = 0; i < kPerThread; ++i) {
      ASSERT_TRUE(store->Enqueue(kind, std::to_string(i)).ok());
      ASSERT_TRUE(store->RaiseMetadataVersion("m", static_cast<uint64_t>(i)).ok());
      ASSERT_TRUE(store->Peek(kind, 5).ok());
    }
  };
  std::thread a(writer, OutboxKind::kTelemetry);
  std::thread b(writer, OutboxKind::kUpdateEvent);
  a.join();
  b.join();
  EXPECT_EQ(store->HighestMetadataVersion("m").value_or(0), kPerThread - 1u);
  // Each thread's items stay in its own enqueue order.
  for (OutboxKind kind : {OutboxKind::kTelemetry, OutboxKind::kUpdateEvent}) {
    auto items = store->Peek(kind, 1000);
    ASSERT_TRUE(items.ok());
    ASSERT_EQ(items->size(), static_cast<size_t>(kPerThread));
    for (int i = 0; i < kPerThread; ++i)
      EXPECT_EQ((*items)[static_cast<size_t>(i)].payload, std::to_string(i));
  }
}

}  // namespace
}  // namespace edgefleet::agent
