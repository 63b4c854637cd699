// Process-wide settings every edgefleet program makes at the top of main.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace edgefleet {

// Turns off abseil's mutex deadlock detection. Debian builds abseil without NDEBUG, so every
// absl::Mutex acquisition (gRPC takes several per call) records lock-order edges in a global
// graph under a global lock: a few per cent of a busy server's CPU, and a point where all its
// threads meet. Our own locks are std::mutex; ThreadSanitizer builds find lock-order inversions.
void DisableMutexDeadlockDetection();

// Gives the heap's free pages back to the system (glibc's malloc_trim): a server that served a
// burst on many threads keeps each thread arena's freed memory otherwise (bench/fleet: 142 MiB
// after a load against 86 MiB trimmed, with 61 MiB before it).
void ReleaseFreeHeapMemory();

// Runs `tick` every `interval` on its own thread, the first time one interval after the start,
// until the thread is asked to stop (destroying it asks and joins; a tick in progress finishes).
std::jthread RunEvery(std::chrono::milliseconds interval, std::function<void()> tick);

}  // namespace edgefleet
