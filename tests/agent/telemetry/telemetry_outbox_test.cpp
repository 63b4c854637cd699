// Telemetry windows through the outbox to a (fake) server: days offline then back, an answer
// lost after the server stored the upload, windows the server refuses, uploads split to the
// request limit, and a restart in between — every window arrives, under one key, once.
#include "agent/telemetry/telemetry_outbox.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>

#include "common/core/limits.h"
#include "tests/fakes/fake_device_transport.h"

namespace edgefleet::agent {
namespace {

namespace fs = std::filesystem;
using Answer = fakes::FakeDeviceTransport::TelemetryAnswer;

class TelemetryOutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("edgefleet-telemetry-outbox-" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "-" +
            std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    Reopen();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A restart of the agent: the outbox is read back from disk.
  void Reopen() {
    outbox_.reset();
    state_.reset();
    auto state = StateStore::Open((dir_ / "agent.db").string());
    ASSERT_TRUE(state.ok()) << state.status();
    state_ = *std::move(state);
    outbox_ = std::make_unique<TelemetryOutbox>(*state_, transport_);
  }

  static v1::TelemetryWindow Window(int minute) {
    v1::TelemetryWindow w;
    w.set_model_name("classifier");
    w.set_version("2");
    w.mutable_window_start()->set_seconds(1'800'000'000 + 60 * minute);
    w.mutable_window_end()->set_seconds(1'800'000'000 + 60 * (minute + 1));
    w.set_request_count(static_cast<uint64_t>(minute));
    return w;
  }

  // What the server keeps: one window per (stream, sequence), as its primary key does; fails
  // the test when a key arrives twice with different contents.
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> ServerView() {
    std::map<std::pair<uint64_t, uint64_t>, uint64_t> kept;
    for (const auto& upload : transport_.Telemetry()) {
      EXPECT_NE(upload.stream_id(), 0u);
      EXPECT_LE(static_cast<size_t>(upload.windows_size()),
                RequestLimits::kTelemetryWindowsPerUpload);
      for (const auto& w : upload.windows()) {
        auto [it, added] =
            kept.emplace(std::pair(upload.stream_id(), w.sequence()), w.request_count());
        if (!added) {
          EXPECT_EQ(it->second, w.request_count()) << "one key, two windows";
        }
      }
    }
    return kept;
  }

  uint64_t Queued() {
    auto items = state_->Peek(StateStore::OutboxKind::kTelemetry, 10'000);
    return items.ok() ? items->size() : ~uint64_t{0};
  }

  fs::path dir_;
  fakes::FakeDeviceTransport transport_;
  std::unique_ptr<StateStore> state_;
  std::unique_ptr<TelemetryOutbox> outbox_;
};

TEST_F(TelemetryOutboxTest, WindowsKeptWhileOfflineArriveOnceWhenBackInUploadsOfTheLimit) {
  transport_.SetTelemetryAnswer(Answer::kUnavailable);
  constexpr int kWindows = 3 * 24 * 60 / 60;  // three days of hourly windows, say
  for (int m = 0; m < kWindows; ++m) {
    ASSERT_TRUE(outbox_->Enqueue(Window(m)).ok());
    if (m % 10 == 0) {
      EXPECT_FALSE(outbox_->Flush().ok()) << "offline";
    }
  }
  Reopen();  // and the agent restarted meanwhile
  transport_.SetTelemetryAnswer(Answer::kAccept);
  auto flushed = outbox_->Flush();
  ASSERT_TRUE(flushed.ok()) << flushed.status();
  EXPECT_EQ(flushed->accepted, static_cast<uint64_t>(kWindows));
  const auto kept = ServerView();
  ASSERT_EQ(kept.size(), static_cast<size_t>(kWindows));
  std::set<uint64_t> minutes;
  for (const auto& [key, requests] : kept) minutes.insert(requests);
  EXPECT_EQ(minutes.size(), static_cast<size_t>(kWindows)) << "every window, each once";
  EXPECT_EQ(Queued(), 0u);
  EXPECT_EQ(transport_.Telemetry().size(), (kWindows + 15) / 16u);
}

TEST_F(TelemetryOutboxTest, AnAnswerLostAfterTheServerStoredTheUploadResendsTheSameKeys) {
  for (int m = 0; m < 5; ++m) ASSERT_TRUE(outbox_->Enqueue(Window(m)).ok());
  transport_.SetTelemetryAnswer(Answer::kLoseAnswer);
  EXPECT_FALSE(outbox_->Flush().ok());
  EXPECT_EQ(Queued(), 5u) << "not answered, so not removed";
  transport_.SetTelemetryAnswer(Answer::kAccept);
  ASSERT_TRUE(outbox_->Flush().ok());
  ASSERT_EQ(transport_.Telemetry().size(), 2u);
  // Both uploads carry the same keys: the server's primary key stores them once.
  EXPECT_EQ(ServerView().size(), 5u);
  EXPECT_EQ(transport_.Telemetry()[0].SerializeAsString(),
            transport_.Telemetry()[1].SerializeAsString());
  EXPECT_EQ(Queued(), 0u);
}

TEST_F(TelemetryOutboxTest, WindowsRefusedForGoodAreDroppedNotResent) {
  for (int m = 0; m < 3; ++m) ASSERT_TRUE(outbox_->Enqueue(Window(m)).ok());
  auto first = state_->Peek(StateStore::OutboxKind::kTelemetry, 1);
  ASSERT_TRUE(first.ok() && !first->empty());
  transport_.RefuseTelemetrySequences({static_cast<uint64_t>((*first)[0].id)});
  auto flushed = outbox_->Flush();
  ASSERT_TRUE(flushed.ok()) << flushed.status();
  EXPECT_EQ(flushed->accepted, 2u);
  EXPECT_EQ(flushed->refused, 1u);
  EXPECT_EQ(Queued(), 0u);
  ASSERT_TRUE(outbox_->Flush().ok());
  EXPECT_EQ(transport_.Telemetry().size(), 1u) << "nothing left to send";
}

TEST_F(TelemetryOutboxTest, UploadsReportWhatTheOutboxDroppedAndWhatWasRefusedAcrossRestarts) {
  // Room for about three windows: the oldest go as new ones come.
  const uint64_t window_bytes = Window(0).SerializeAsString().size();
  {
    outbox_.reset();
    state_.reset();
    auto state = StateStore::Open((dir_ / "agent.db").string(),
                                  {.outbox_max_bytes = 3 * window_bytes + window_bytes / 2});
    ASSERT_TRUE(state.ok()) << state.status();
    state_ = *std::move(state);
    outbox_ = std::make_unique<TelemetryOutbox>(*state_, transport_);
  }
  for (int m = 0; m < 8; ++m) ASSERT_TRUE(outbox_->Enqueue(Window(m)).ok());
  EXPECT_EQ(Queued(), 3u);
  auto first = state_->Peek(StateStore::OutboxKind::kTelemetry, 1);
  ASSERT_TRUE(first.ok() && !first->empty());
  transport_.RefuseTelemetrySequences({static_cast<uint64_t>((*first)[0].id)});
  auto flushed = outbox_->Flush();
  ASSERT_TRUE(flushed.ok()) << flushed.status();
  EXPECT_EQ(flushed->refused, 1u);
  ASSERT_EQ(transport_.Telemetry().size(), 1u);
  EXPECT_EQ(transport_.Telemetry()[0].dropped_windows().outbox_full(), 5u);
  EXPECT_EQ(transport_.Telemetry()[0].dropped_windows().refused(), 0u)
      << "refused by this very upload: reported by the next";

  Reopen();  // the counts are persisted
  ASSERT_TRUE(outbox_->Enqueue(Window(9)).ok());
  ASSERT_TRUE(outbox_->Flush().ok());
  ASSERT_EQ(transport_.Telemetry().size(), 2u);
  EXPECT_EQ(transport_.Telemetry()[1].dropped_windows().outbox_full(), 5u) << "cumulative";
  EXPECT_EQ(transport_.Telemetry()[1].dropped_windows().refused(), 1u);
  auto stats = state_->OutboxStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)[static_cast<size_t>(StateStore::OutboxKind::kTelemetry)].refused, 1u);
}

TEST_F(TelemetryOutboxTest, NothingLostMeansNoDropCountsOnTheWire) {
  ASSERT_TRUE(outbox_->Enqueue(Window(0)).ok());
  ASSERT_TRUE(outbox_->Flush().ok());
  ASSERT_EQ(transport_.Telemetry().size(), 1u);
  EXPECT_FALSE(transport_.Telemetry()[0].has_dropped_windows());
}

TEST_F(TelemetryOutboxTest, AStreamSurvivesRestartsSoSequencesNeverRepeatUnderIt) {
  ASSERT_TRUE(outbox_->Enqueue(Window(0)).ok());
  ASSERT_TRUE(outbox_->Flush().ok());
  Reopen();
  ASSERT_TRUE(outbox_->Enqueue(Window(1)).ok());
  ASSERT_TRUE(outbox_->Flush().ok());
  const auto uploads = transport_.Telemetry();
  ASSERT_EQ(uploads.size(), 2u);
  EXPECT_EQ(uploads[0].stream_id(), uploads[1].stream_id());
  EXPECT_LT(uploads[0].windows(0).sequence(), uploads[1].windows(0).sequence());
}

}  // namespace
}  // namespace edgefleet::agent
