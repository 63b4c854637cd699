// CPU priority of the agent's background work. Downloading, verifying, patching, loading and
// warming up a new model version all run on the agent's update thread; at a lower priority
// than the inference threads they take the CPU that Predict leaves, so a swap does not show in
// the applications' latency.
#pragma once

#include "absl/status/status.h"

namespace edgefleet::agent {

inline constexpr int kMaxNice = 19;

// Sets the nice value (1..kMaxNice) of the calling thread only, unless it is already that low;
// threads it starts afterwards inherit it. Cannot be undone without privileges, so call it on a
// thread that does only background work. InvalidArgument outside 1..kMaxNice; the OS error
// otherwise.
absl::Status LowerThisThreadPriority(int nice);

// The calling thread's nice value.
int ThisThreadNice();

}  // namespace edgefleet::agent
