// TransferWatchdog defends a download against TUF's slow-retrieval attack: a server (or anything
// on the path) that keeps a stream open while trickling bytes would otherwise hold the update
// until the whole-transfer deadline. The watchdog cancels a transfer that receives fewer than
// `min_bytes_per_second * window` bytes in any `window`; the download then fails as DOWNLOAD
// (transient) and resumes from the bytes it kept at the next check-in.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace edgefleet::agent {

struct StallPolicy {
  // Length of the window the rate is measured over; zero disables the watchdog.
  std::chrono::milliseconds window{std::chrono::seconds(60)};
  // The slowest average rate tolerated over a window.
  uint64_t min_bytes_per_second = 256;

  uint64_t MinBytesPerWindow() const;
  // The chunk size to ask the server for: half a window's minimum (4 KiB to 256 KiB), so that a
  // link at the minimum rate delivers a chunk in every window rather than one chunk per several.
  uint32_t ChunkBytes() const;
};

class TransferWatchdog {
 public:
  // Starts watching now; calls `cancel` (from the watchdog's own thread, at most once) when a
  // window ends with too few bytes received.
  TransferWatchdog(StallPolicy policy, std::function<void()> cancel);
  ~TransferWatchdog();

  TransferWatchdog(const TransferWatchdog&) = delete;
  TransferWatchdog& operator=(const TransferWatchdog&) = delete;

  // Counts bytes received; call from the transfer's thread.
  void Received(uint64_t bytes);
  // Whether the watchdog cancelled the transfer.
  bool Fired() const;
  // Why it fired, for the failure report; empty while it has not.
  std::string Reason() const;

 private:
  void Watch();

  const StallPolicy policy_;
  const std::function<void()> cancel_;
  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  bool fired_ = false;
  uint64_t window_bytes_ = 0;
  std::string reason_;
  std::thread thread_;
};

}  // namespace edgefleet::agent
