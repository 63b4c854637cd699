// Process-wide settings every edgefleet program makes at the top of main.
#pragma once

namespace edgefleet {

// Turns off abseil's mutex deadlock detection. Debian builds abseil without NDEBUG, so every
// absl::Mutex acquisition (gRPC takes several per call) records lock-order edges in a global
// graph under a global lock: a few per cent of a busy server's CPU, and a point where all its
// threads meet. Our own locks are std::mutex; ThreadSanitizer builds find lock-order inversions.
void DisableMutexDeadlockDetection();

}  // namespace edgefleet
