#include "agent/update/transfer_watchdog.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace edgefleet::agent {
namespace {

using std::chrono::milliseconds;

// Plays a download stream: Read() blocks like a gRPC reader until bytes arrive or the stream is
// cancelled, so the watchdog is the only thing that can end a stalled one.
class FakeStream {
 public:
  void Cancel() {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    cv_.notify_all();
  }
  // Waits until cancelled; true when it was, false after `limit` (the test's own safety net).
  bool WaitCancelled(milliseconds limit) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [this] { return cancelled_; });
  }
  bool cancelled() {
    std::lock_guard lock(mu_);
    return cancelled_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool cancelled_ = false;
};

TEST(StallPolicyTest, MinimumBytesScaleWithTheWindow) {
  EXPECT_EQ((StallPolicy{std::chrono::seconds(60), 256}).MinBytesPerWindow(), 15360u);
  EXPECT_EQ((StallPolicy{milliseconds(500), 1000}).MinBytesPerWindow(), 500u);
}

TEST(StallPolicyTest, ChunksAreHalfAWindowsMinimumWithinTheServersBounds) {
  EXPECT_EQ((StallPolicy{std::chrono::seconds(60), 256}).ChunkBytes(), 7680u);
  EXPECT_EQ((StallPolicy{std::chrono::seconds(1), 100}).ChunkBytes(), 4096u);
  EXPECT_EQ((StallPolicy{std::chrono::seconds(60), 1'000'000}).ChunkBytes(), 256u * 1024);
}

TEST(TransferWatchdogTest, AStreamThatSendsNothingIsCancelledAfterOneWindow) {
  FakeStream stream;
  const auto start = std::chrono::steady_clock::now();
  TransferWatchdog watchdog(StallPolicy{milliseconds(200), 1000}, [&] { stream.Cancel(); });
  ASSERT_TRUE(stream.WaitCancelled(milliseconds(10'000)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(200));
  EXPECT_TRUE(watchdog.Fired());
  EXPECT_EQ(watchdog.Reason(),
            "download too slow: 0 bytes in the last 0.2 s, below the minimum of 1000 bytes/s");
}

TEST(TransferWatchdogTest, ATrickleBelowTheRateIsCancelledEvenThoughBytesKeepComing) {
  FakeStream stream;
  TransferWatchdog watchdog(StallPolicy{milliseconds(200), 100'000}, [&] { stream.Cancel(); });
  // 1 byte every 5 ms is ~200 bytes/s: alive, but far below 100 kB/s.
  while (!stream.cancelled()) {
    watchdog.Received(1);
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_TRUE(watchdog.Fired());
  EXPECT_NE(watchdog.Reason().find("below the minimum of 100000 bytes/s"), std::string::npos);
}

TEST(TransferWatchdogTest, ASteadyStreamAboveTheRateIsNeverCancelled) {
  std::atomic<bool> cancelled = false;
  {
    TransferWatchdog watchdog(StallPolicy{milliseconds(100), 1000}, [&] { cancelled = true; });
    // 10 windows at ~1 MB/s against a minimum of 100 bytes per window.
    const auto end = std::chrono::steady_clock::now() + milliseconds(1000);
    while (std::chrono::steady_clock::now() < end) {
      watchdog.Received(1000);
      std::this_thread::sleep_for(milliseconds(1));
    }
    EXPECT_FALSE(watchdog.Fired());
  }
  EXPECT_FALSE(cancelled);
}

TEST(TransferWatchdogTest, FinishingBeforeTheFirstWindowEndsStopsTheWatchdogAtOnce) {
  std::atomic<bool> cancelled = false;
  const auto start = std::chrono::steady_clock::now();
  {
    TransferWatchdog watchdog(StallPolicy{std::chrono::seconds(60), 1000},
                              [&] { cancelled = true; });
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_FALSE(cancelled);
}

}  // namespace
}  // namespace edgefleet::agent
