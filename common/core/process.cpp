#include "common/core/process.h"

#include "absl/synchronization/mutex.h"

namespace edgefleet {

void DisableMutexDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace edgefleet
