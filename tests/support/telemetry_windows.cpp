#include "tests/support/telemetry_windows.h"

#include <cmath>
#include <vector>

#include "common/telemetry/feature_histogram.h"
#include "common/telemetry/latency_sketch.h"
#include "common/telemetry/telemetry_codec.h"

namespace edgefleet::test {

v1::TelemetryWindow MakeTelemetryWindow(std::mt19937_64& rng, const WindowShape& shape,
                                        const std::string& model, const std::string& version,
                                        int64_t start_unix, int64_t length_seconds) {
  v1::TelemetryWindow w;
  w.set_model_name(model);
  w.set_version(version);
  w.mutable_window_start()->set_seconds(start_unix);
  w.mutable_window_end()->set_seconds(start_unix + length_seconds);
  w.set_request_count(shape.requests);
  // Latencies spread over a factor of e (2 ms to 5.4 ms): about 50 of the sketch's 2% buckets.
  telemetry::LatencySketch latency;
  std::uniform_real_distribution<double> spread(0.0, 1.0);
  for (uint64_t i = 0; i < shape.requests; ++i) latency.Add(0.002 * std::exp(spread(rng)));
  *w.mutable_latency() = telemetry::ToProto(latency);
  // Features of N(0, 1) binned at 10 edges near its deciles: 11 bins, as a reference profile
  // from a sample gives them.
  std::vector<double> edges = {-1.64, -1.28, -0.84, -0.52, -0.25, 0.0, 0.25, 0.52, 0.84, 1.28};
  std::normal_distribution<double> value(0.0, 1.0);
  for (int f = 0; f < shape.features; ++f) {
    telemetry::FeatureHistogram h(edges);
    for (uint64_t i = 0; i < shape.requests; ++i) h.Add(value(rng));
    *w.add_features() = telemetry::ToProto(h);
  }
  std::vector<double> class_edges;
  for (int c = 0; c + 1 < shape.classes; ++c) class_edges.push_back(c + 0.5);
  telemetry::FeatureHistogram outputs(class_edges);
  std::uniform_int_distribution<int> cls(0, shape.classes - 1);
  for (uint64_t i = 0; i < shape.requests; ++i) outputs.Add(cls(rng));
  *w.mutable_outputs() = telemetry::ToProto(outputs);
  return w;
}

}  // namespace edgefleet::test
