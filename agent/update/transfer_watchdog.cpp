#include "agent/update/transfer_watchdog.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/core/limits.h"

namespace edgefleet::agent {

uint64_t StallPolicy::MinBytesPerWindow() const {
  return min_bytes_per_second * static_cast<uint64_t>(window.count()) / 1000;
}

uint32_t StallPolicy::ChunkBytes() const {
  return static_cast<uint32_t>(std::clamp<uint64_t>(MinBytesPerWindow() / 2,
                                                    RequestLimits::kMinArtifactChunkBytes,
                                                    RequestLimits::kMaxArtifactChunkBytes));
}

TransferWatchdog::TransferWatchdog(StallPolicy policy, std::function<void()> cancel)
    : policy_(policy), cancel_(std::move(cancel)) {
  if (policy_.window.count() > 0) thread_ = std::thread([this] { Watch(); });
}

TransferWatchdog::~TransferWatchdog() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void TransferWatchdog::Received(uint64_t bytes) {
  std::lock_guard lock(mu_);
  window_bytes_ += bytes;
}

bool TransferWatchdog::Fired() const {
  std::lock_guard lock(mu_);
  return fired_;
}

std::string TransferWatchdog::Reason() const {
  std::lock_guard lock(mu_);
  return reason_;
}

void TransferWatchdog::Watch() {
  const uint64_t minimum = policy_.MinBytesPerWindow();
  std::unique_lock lock(mu_);
  // Windows are back to back from the start, so a stream that stalls right away is cut after
  // one window, and a burst cannot buy more than the window it falls in.
  auto window_end = std::chrono::steady_clock::now() + policy_.window;
  while (!stop_cv_.wait_until(lock, window_end, [this] { return stopping_; })) {
    if (window_bytes_ < minimum) {
      fired_ = true;
      reason_ = absl::StrCat("download too slow: ", window_bytes_, " bytes in the last ",
                             policy_.window.count() / 1000.0, " s, below the minimum of ",
                             policy_.min_bytes_per_second, " bytes/s");
      lock.unlock();
      cancel_();
      return;
    }
    window_bytes_ = 0;
    window_end += policy_.window;
  }
}

}  // namespace edgefleet::agent
