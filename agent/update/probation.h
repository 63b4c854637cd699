// Probation: whether a version that was just swapped in keeps serving. Pure: the Updater gathers
// the evidence (VersionMonitor counts, time on the injected clock) and acts on the verdict.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace edgefleet::agent {

struct ProbationPolicy {
  // How long the new version is watched; 0 decides at the first check (tests of other steps).
  std::chrono::seconds window{60};
  // When there is traffic, the verdict waits for this many answers (up to kMaxWindows windows);
  // with no traffic at all the window alone decides.
  uint32_t min_requests = 50;
  // The new version's Predict p95 may be at most this many times the previous version's.
  double latency_ratio = 2.0;
  // Failed answers (malformed requests aside) allowed, as a fraction of the answers.
  double max_error_ratio = 0.01;
  // Starts of the agent that find the same version on probation before it is rolled back.
  uint32_t crash_limit = 2;

  // Low traffic extends the window at most this many times over, then what was seen decides.
  static constexpr int kMaxWindows = 10;
  // Latency needs this many samples on both sides to be judged at all.
  static constexpr size_t kMinLatencySamples = 10;
  // Below this a p95 is scheduling noise, not the model: the baseline is never taken as smaller.
  static constexpr double kLatencyFloorSeconds = 0.001;
};

struct ProbationEvidence {
  std::chrono::nanoseconds elapsed{0};  // since the swap (or since the restart that resumed it)
  uint64_t answers = 0;
  uint64_t errors = 0;
  uint64_t non_finite = 0;
  std::optional<double> p95_seconds;  // the new version's
  size_t latency_samples = 0;
  std::optional<double> previous_p95_seconds;  // none after a restart or a first install
  size_t previous_latency_samples = 0;
};

enum class ProbationVerdict { kWatching, kPassed, kFailed };

struct ProbationResult {
  ProbationVerdict verdict = ProbationVerdict::kWatching;
  // The measured numbers, e.g. "errors 7/50, non-finite 0, p95 41.0ms vs 9.0ms (limit 2x)".
  std::string detail;
};

// A version fails as soon as it has answered min_requests times with errors, non-finite outputs
// or a slow p95; it passes once the window is over with no traffic or with min_requests good
// answers. Non-finite outputs fail it at once: one is proof enough.
ProbationResult JudgeProbation(const ProbationPolicy& policy, const ProbationEvidence& evidence);

}  // namespace edgefleet::agent
