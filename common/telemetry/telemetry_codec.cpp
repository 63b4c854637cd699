#include "common/telemetry/telemetry_codec.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/core/limits.h"

namespace edgefleet::telemetry {

// The server's request limits admit exactly what the summaries can hold.
static_assert(LatencySketch::kMaxBuckets == RequestLimits::kTelemetrySketchBuckets);
static_assert(FeatureHistogram::kMaxEdges + 1 == RequestLimits::kTelemetryBins);

v1::LatencySketch ToProto(const LatencySketch& sketch) {
  const LatencySketch::Encoded e = sketch.Encode();
  v1::LatencySketch proto;
  proto.set_zero_count(e.zero_count);
  proto.set_first_index(e.first_index);
  proto.mutable_counts()->Add(e.counts.begin(), e.counts.end());
  proto.set_sum_seconds(e.sum_seconds);
  return proto;
}

absl::StatusOr<LatencySketch> FromProto(const v1::LatencySketch& proto) {
  if (static_cast<size_t>(proto.counts_size()) > LatencySketch::kMaxBuckets) {
    return absl::InvalidArgumentError(absl::StrCat("latency sketch has ", proto.counts_size(),
                                                   " buckets, more than the ",
                                                   LatencySketch::kMaxBuckets, " allowed"));
  }
  LatencySketch::Encoded e;
  e.zero_count = proto.zero_count();
  e.first_index = proto.first_index();
  e.counts.assign(proto.counts().begin(), proto.counts().end());
  e.sum_seconds = proto.sum_seconds();
  auto sketch = LatencySketch::Decode(e);
  if (!sketch) {
    return absl::InvalidArgumentError(
        "latency sketch is malformed: bucket indexes outside 1 ns..10^6 s, a negative or "
        "non-finite sum, or counts that overflow");
  }
  return *std::move(sketch);
}

v1::FeatureWindow ToProto(const FeatureHistogram& histogram) {
  v1::FeatureWindow proto;
  proto.mutable_bins()->Add(histogram.bins().begin(), histogram.bins().end());
  proto.set_nan_count(histogram.nan_count());
  if (histogram.count() > 0) {
    proto.set_min(*histogram.min());
    proto.set_max(*histogram.max());
    proto.set_sum(histogram.sum());
  }
  return proto;
}

absl::Status CheckFeatureWindow(const v1::FeatureWindow& proto) {
  if (!FeatureHistogram::ConsistentParts({proto.bins().begin(), proto.bins().end()}, proto.min(),
                                         proto.max(), proto.sum())) {
    return absl::InvalidArgumentError(
        "histogram is malformed: no bins or too many, min above max, a non-finite statistic, "
        "or counts that overflow");
  }
  return absl::OkStatus();
}

absl::StatusOr<FeatureHistogram> FromProto(const v1::FeatureWindow& proto,
                                           const std::vector<double>& edges) {
  if (static_cast<size_t>(proto.bins_size()) != edges.size() + 1) {
    return absl::InvalidArgumentError(absl::StrCat("histogram has ", proto.bins_size(),
                                                   " bins; the reference profile has ",
                                                   edges.size() + 1));
  }
  auto histogram = FeatureHistogram::FromParts(
      edges, std::vector<uint64_t>(proto.bins().begin(), proto.bins().end()), proto.nan_count(),
      proto.min(), proto.max(), proto.sum());
  if (!histogram) {
    if (absl::Status s = CheckFeatureWindow(proto); !s.ok()) return s;  // says what is wrong
    return absl::InvalidArgumentError("the reference profile's edges are not strictly increasing");
  }
  return *std::move(histogram);
}

}  // namespace edgefleet::telemetry
