// A latency sketch: log-spaced buckets whose quantiles are within a fixed relative error of the
// exact ones, small enough to send every window and mergeable across devices by adding counts
// (the DDSketch construction). The agent fills one per model version and window; the server
// merges them per (model, version, hw) and derives Prometheus' classic buckets from the result.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace edgefleet::telemetry {

class LatencySketch {
 public:
  // Quantiles are within this relative error of the exact value (for values >= kMinSeconds).
  static constexpr double kRelativeAccuracy = 0.01;
  // Values below this (including 0 and negatives) count in one zero bucket, reported as 0.
  static constexpr double kMinSeconds = 1e-9;
  // Buckets a sketch may hold; a corrupt or hostile sketch with more is refused on decode.
  // 1 ns .. 10^6 s at 1% spans ~1,730 buckets (RequestLimits::kTelemetrySketchBuckets).
  static constexpr size_t kMaxBuckets = 2048;

  void Add(double seconds) { AddCount(seconds, 1); }
  void AddCount(double seconds, uint64_t count);
  // Adds `other`'s counts: the result is the sketch of both populations.
  void Merge(const LatencySketch& other);

  uint64_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  double sum_seconds() const { return sum_seconds_; }

  // The q-quantile (0 <= q <= 1) by the lower-rank convention of exact order statistics
  // (the value at rank floor(q * (count - 1))); nullopt when empty.
  std::optional<double> Quantile(double q) const;
  // How many values are at or below `upper_seconds` — for a Prometheus bucket `le`. A value
  // counts when its bucket's representative is at or below the bound, so the answer errs by at
  // most the values within 1% of the bound.
  uint64_t CountAtOrBelow(double upper_seconds) const;

  // The encoded form (what the proto carries): the zero bucket, then runs of consecutive bucket
  // indexes starting at `first_index`.
  struct Encoded {
    uint64_t zero_count = 0;
    int32_t first_index = 0;
    std::vector<uint64_t> counts;  // counts[i] is bucket first_index + i
    double sum_seconds = 0;
  };
  Encoded Encode() const;
  // Nullopt for an encoding no sketch produces: more than kMaxBuckets buckets or an index out of
  // range. Counts of zero are allowed (gaps inside the run).
  static std::optional<LatencySketch> Decode(const Encoded& encoded);

  friend bool operator==(const LatencySketch&, const LatencySketch&) = default;

 private:
  static int32_t IndexOf(double seconds);
  static double ValueOf(int32_t index);

  std::map<int32_t, uint64_t> buckets_;  // sparse: a window touches few buckets
  uint64_t zero_count_ = 0;
  uint64_t count_ = 0;
  double sum_seconds_ = 0;
};

}  // namespace edgefleet::telemetry
