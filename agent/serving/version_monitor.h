// Per-version request statistics kept without locks on the request path: answers, errors,
// answers with a non-finite output value, and the most recent Predict latencies. The probation
// watch reads the new version's; the previous version's recent p95 is its latency baseline.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "agent/serving/model_host.h"

namespace edgefleet::agent {

class VersionMonitor final : public RequestObserver {
 public:
  // Latencies of this many most recent answers give the p95.
  static constexpr size_t kLatencySamples = 1024;

  struct Snapshot {
    uint64_t answers = 0;
    // Failed answers, except InvalidArgument: a malformed request is the caller's fault and
    // is refused alike by every version.
    uint64_t errors = 0;
    uint64_t non_finite = 0;            // successful answers holding NaN or Inf
    std::optional<double> p95_seconds;  // none before the first answer
    size_t latency_samples = 0;
  };

  void OnAnswer(const absl::StatusOr<std::vector<TensorData>>& answer,
                std::chrono::nanoseconds latency) override;

  // A consistent-enough view for judging: counters are read one by one while answers continue.
  Snapshot Read() const;

 private:
  std::atomic<uint64_t> answers_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> non_finite_{0};
  std::atomic<uint64_t> next_sample_{0};
  // Microseconds plus one, so that 0 marks a slot not written yet.
  std::array<std::atomic<uint32_t>, kLatencySamples> latency_micros_{};
};

}  // namespace edgefleet::agent
