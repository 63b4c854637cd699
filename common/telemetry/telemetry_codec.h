// Between the telemetry summaries and their proto form. Decoding is validation: a window comes
// from a device and is untrusted until every histogram and sketch in it is one an agent could
// have produced; errors are INVALID_ARGUMENT naming the part that is wrong.
#pragma once

#include "absl/status/statusor.h"
#include "common/telemetry/feature_histogram.h"
#include "common/telemetry/latency_sketch.h"
#include "edgefleet/v1/telemetry.pb.h"

namespace edgefleet::telemetry {

v1::LatencySketch ToProto(const LatencySketch& sketch);
absl::StatusOr<LatencySketch> FromProto(const v1::LatencySketch& proto);

// The bins and statistics of a histogram (its edges travel in the reference profile).
v1::FeatureWindow ToProto(const FeatureHistogram& histogram);
// Whether a window's histogram could come from an agent, before its edges are known.
absl::Status CheckFeatureWindow(const v1::FeatureWindow& proto);
// `edges` are the profile's for this feature; the window must have edges.size() + 1 bins.
absl::StatusOr<FeatureHistogram> FromProto(const v1::FeatureWindow& proto,
                                           const std::vector<double>& edges);

}  // namespace edgefleet::telemetry
