#include "common/telemetry/latency_sketch.h"

#include <cmath>
#include <limits>

namespace edgefleet::telemetry {
namespace {

// gamma = (1 + a) / (1 - a): a bucket (gamma^(i-1), gamma^i] holds values whose midpoint
// estimate 2 gamma^i / (gamma + 1) is within a of each of them.
const double kGamma =
    (1 + LatencySketch::kRelativeAccuracy) / (1 - LatencySketch::kRelativeAccuracy);
const double kLogGamma = std::log(kGamma);
// Indexes of 1 ns and of 10^6 s; anything decoded outside is not a latency.
const int32_t kMinIndex =
    static_cast<int32_t>(std::ceil(std::log(LatencySketch::kMinSeconds) / kLogGamma));
const int32_t kMaxIndex = static_cast<int32_t>(std::ceil(std::log(1e6) / kLogGamma));

}  // namespace

int32_t LatencySketch::IndexOf(double seconds) {
  const double i = std::ceil(std::log(seconds) / kLogGamma);
  if (i > kMaxIndex) return kMaxIndex;
  return static_cast<int32_t>(i);
}

double LatencySketch::ValueOf(int32_t index) { return 2 * std::pow(kGamma, index) / (kGamma + 1); }

void LatencySketch::AddCount(double seconds, uint64_t count) {
  if (count == 0) return;
  if (!(seconds >= kMinSeconds)) {  // also NaN
    zero_count_ += count;
  } else {
    buckets_[IndexOf(seconds)] += count;
    sum_seconds_ += seconds * static_cast<double>(count);
  }
  count_ += count;
}

void LatencySketch::Merge(const LatencySketch& other) {
  for (const auto& [index, n] : other.buckets_) buckets_[index] += n;
  zero_count_ += other.zero_count_;
  count_ += other.count_;
  sum_seconds_ += other.sum_seconds_;
}

std::optional<double> LatencySketch::Quantile(double q) const {
  if (count_ == 0 || !(q >= 0 && q <= 1)) return std::nullopt;
  const auto rank = static_cast<uint64_t>(q * static_cast<double>(count_ - 1));
  if (rank < zero_count_) return 0.0;
  uint64_t seen = zero_count_;
  for (const auto& [index, n] : buckets_) {
    seen += n;
    if (rank < seen) return ValueOf(index);
  }
  return ValueOf(buckets_.rbegin()->first);
}

uint64_t LatencySketch::CountAtOrBelow(double upper_seconds) const {
  if (upper_seconds < 0) return 0;
  uint64_t n = zero_count_;
  for (const auto& [index, c] : buckets_) {
    if (ValueOf(index) > upper_seconds) break;
    n += c;
  }
  return n;
}

LatencySketch::Encoded LatencySketch::Encode() const {
  Encoded e;
  e.zero_count = zero_count_;
  e.sum_seconds = sum_seconds_;
  if (buckets_.empty()) return e;
  e.first_index = buckets_.begin()->first;
  e.counts.assign(static_cast<size_t>(buckets_.rbegin()->first - e.first_index + 1), 0);
  for (const auto& [index, n] : buckets_) e.counts[static_cast<size_t>(index - e.first_index)] = n;
  return e;
}

std::optional<LatencySketch> LatencySketch::Decode(const Encoded& e) {
  if (e.counts.size() > kMaxBuckets) return std::nullopt;
  if (!std::isfinite(e.sum_seconds) || e.sum_seconds < 0) return std::nullopt;
  const int64_t last =
      static_cast<int64_t>(e.first_index) + static_cast<int64_t>(e.counts.size()) - 1;
  if (!e.counts.empty() && (e.first_index < kMinIndex || last > kMaxIndex)) return std::nullopt;
  LatencySketch s;
  s.zero_count_ = e.zero_count;
  s.count_ = e.zero_count;
  for (size_t i = 0; i < e.counts.size(); ++i) {
    if (e.counts[i] == 0) continue;
    if (s.count_ > std::numeric_limits<uint64_t>::max() - e.counts[i]) return std::nullopt;
    s.buckets_[e.first_index + static_cast<int32_t>(i)] = e.counts[i];
    s.count_ += e.counts[i];
  }
  s.sum_seconds_ = e.sum_seconds;
  return s;
}

}  // namespace edgefleet::telemetry
