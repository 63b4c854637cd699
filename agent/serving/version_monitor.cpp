#include "agent/serving/version_monitor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace edgefleet::agent {

void VersionMonitor::OnAnswer(const absl::StatusOr<std::vector<TensorData>>& answer,
                              std::chrono::nanoseconds latency) {
  answers_.fetch_add(1, std::memory_order_relaxed);
  if (!answer.ok()) {
    if (answer.status().code() != absl::StatusCode::kInvalidArgument) {
      errors_.fetch_add(1, std::memory_order_relaxed);
    }
  } else if (!AllFinite(*answer)) {
    non_finite_.fetch_add(1, std::memory_order_relaxed);
  }
  const int64_t micros = std::chrono::duration_cast<std::chrono::microseconds>(latency).count();
  const uint32_t stored = static_cast<uint32_t>(
      std::clamp<int64_t>(micros, 0, std::numeric_limits<uint32_t>::max() - 1) + 1);
  const uint64_t slot = next_sample_.fetch_add(1, std::memory_order_relaxed) % kLatencySamples;
  latency_micros_[slot].store(stored, std::memory_order_relaxed);
}

VersionMonitor::Snapshot VersionMonitor::Read() const {
  Snapshot s;
  s.answers = answers_.load(std::memory_order_relaxed);
  s.errors = errors_.load(std::memory_order_relaxed);
  s.non_finite = non_finite_.load(std::memory_order_relaxed);
  std::vector<uint32_t> samples;
  samples.reserve(kLatencySamples);
  for (const auto& slot : latency_micros_) {
    if (uint32_t v = slot.load(std::memory_order_relaxed); v != 0) samples.push_back(v - 1);
  }
  s.latency_samples = samples.size();
  if (!samples.empty()) {
    // Nearest rank: the smallest sample with at least 95% of the samples at or below it.
    const size_t rank = (samples.size() * 95 + 99) / 100;
    std::nth_element(samples.begin(), samples.begin() + static_cast<ptrdiff_t>(rank - 1),
                     samples.end());
    s.p95_seconds = static_cast<double>(samples[rank - 1]) / 1e6;
  }
  return s;
}

}  // namespace edgefleet::agent
