// Summarises what one serving model version does, window by window, on the request path: the
// request count, errors by reason, a latency sketch, one histogram per input feature and one of
// the outputs. A window is cut into a TelemetryWindow for the outbox; nothing of a request is
// kept beyond its contribution to the summaries.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/engine/inference_engine.h"
#include "common/telemetry/feature_histogram.h"
#include "common/telemetry/features.h"
#include "common/telemetry/latency_sketch.h"
#include "edgefleet/v1/telemetry.pb.h"
#include "edgefleet/v1/types.pb.h"

namespace edgefleet::agent {

// How a version's inputs and outputs are binned: from its reference profile, or nothing but
// counts and statistics when it has none.
struct BinningProfile {
  std::vector<std::vector<double>> feature_edges;  // one per feature
  std::vector<double> output_edges;
  std::string profile_sha256;  // the profile's; windows carry it so the server never mixes bins

  static absl::StatusOr<BinningProfile> FromReference(const v1::ReferenceProfile& profile);
};

// The binning of a version: its verified reference profile when the metadata carries one
// (ModelVersion.reference_profile, set by the agent once its SHA-256 matched the signed
// manifest), else the default profile (common/telemetry/reference_profile.h), the same on every
// device from the first request. A stored profile that no longer parses falls back to the
// default (and says so in the log).
BinningProfile BinningFor(const v1::ModelVersion& metadata);

class WindowRecorder {
 public:
  WindowRecorder(std::string model_name, std::string version, BinningProfile profile,
                 std::chrono::system_clock::time_point window_start);

  // One request: its inputs, what the engine answered (or why not) and how long it took. Safe
  // to call from many threads at once; it takes one short lock.
  void Record(const std::vector<TensorData>& inputs,
              const absl::StatusOr<std::vector<TensorData>>& answer,
              std::chrono::nanoseconds latency);

  // Ends the current window at `now` and starts the next one; the window is returned even when
  // it saw no request (a device that served nothing says so).
  v1::TelemetryWindow Cut(std::chrono::system_clock::time_point now);

 private:
  struct Window {
    std::chrono::system_clock::time_point start;
    uint64_t requests = 0;
    std::map<v1::PredictErrorReason, uint64_t> errors;
    telemetry::LatencySketch latency;
    std::vector<telemetry::FeatureHistogram> features;
    telemetry::FeatureHistogram outputs;
  };
  Window Fresh(std::chrono::system_clock::time_point start) const;

  const std::string model_name_;
  const std::string version_;
  const BinningProfile profile_;
  std::mutex mu_;
  Window window_;  // guarded by mu_
};

// The reason an answer failed, for the errors-by-reason counts.
v1::PredictErrorReason ErrorReasonOf(const absl::Status& status);

}  // namespace edgefleet::agent
