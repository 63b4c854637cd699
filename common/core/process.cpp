#include "common/core/process.h"

#include <malloc.h>

#include <condition_variable>
#include <mutex>
#include <stop_token>

#include "absl/synchronization/mutex.h"

namespace edgefleet {

void DisableMutexDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

void ReleaseFreeHeapMemory() { malloc_trim(0); }

std::jthread RunEvery(std::chrono::milliseconds interval, std::function<void()> tick) {
  return std::jthread([interval, tick = std::move(tick)](std::stop_token stop) {
    std::mutex mu;
    std::condition_variable_any wake;
    std::unique_lock lock(mu);
    // Wakes only to stop: the predicate is never true, so each wait lasts the interval.
    while (!wake.wait_for(lock, stop, interval, [] { return false; })) {
      if (stop.stop_requested()) return;
      tick();
    }
  });
}

}  // namespace edgefleet
