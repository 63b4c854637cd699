// A wave's inference gates: its canary devices on the rollout's version against control devices
// on the previous version, from the telemetry windows both sent over the same time. Pure: the
// controller gathers the windows (InferenceSampleSource), this merges and judges them.
//
// Definitions (the controller follows them; tests/server/rollout pins them):
//  - Canaries: the wave's own devices whose target is SERVING the rollout's version (probation
//    passed); their windows of that version that started at or after the wave started.
//  - Previous version: the version the canaries ran before (deployment_targets.previous_version),
//    the most common one among them when they differ (ties: the smallest name). None of them
//    ran one: a first install of the model, and the gates are NOT_APPLICABLE.
//  - The time compared: from the start of the canaries' first window of the rollout's version
//    (when the first canary served it) to now.
//  - Control, LIVE: the devices the rollout's selector matches that no wave of it has been
//    assigned yet; their windows of the previous version that started in the time compared.
//    A device of the rollout never counts as control: it may change version mid-window.
//  - Control, BEFORE_WAVE: when no matching device is left outside the rollout (its last waves),
//    the wave's canaries themselves before they moved: their windows of the previous version
//    that started in the same length of time just before the wave started — what the last
//    control devices measured before they moved, on the same devices.
// Gates (a value equal to its threshold passes):
//  - GATE_LATENCY_P99_RATIO, GATE_LATENCY_P50_RATIO: canary quantile / control quantile of the
//    merged latency sketches (answered requests);
//  - GATE_ERROR_RATE_INCREASE: canary error rate minus control error rate, percentage points;
//  - GATE_OUTPUT_PSI: PSI of the canaries' output bins against the control's (ScoreDrift).
//    Output bins add up only between windows binned by the same reference profile; the sides
//    are compared on the profile both have the most outputs of; NOT_APPLICABLE when they share
//    none (or the model has no output histogram).
// Every gate is INCONCLUSIVE while either side has fewer than min_inferences inferences or
// min_devices devices with an inference (a quiet fleet holds, it neither passes nor fails).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/core/clock.h"
#include "common/telemetry/latency_sketch.h"
#include "edgefleet/v1/rollout.pb.h"
#include "edgefleet/v1/telemetry.pb.h"
#include "server/rollout/wave_plan.h"

namespace edgefleet::server::rollout {

// One side of the comparison: its windows merged.
struct InferenceSide {
  uint64_t devices = 0;  // devices with at least one inference
  uint64_t inferences = 0;
  uint64_t errors = 0;
  telemetry::LatencySketch latency;
  // Output bins summed per binning: the window's profile_sha256 (raw bytes, empty without a
  // profile) and its bin count.
  std::map<std::pair<std::string, size_t>, std::vector<uint64_t>> outputs;
  // The earliest window start merged; unset for no window.
  std::optional<int64_t> first_window_start_unix;
};

// Merges the windows of one side, one at a time.
class InferenceSideBuilder {
 public:
  // InvalidArgument when the window's latency sketch does not decode (it was checked on
  // ingest, so only a corrupt row gets here); nothing is merged then.
  absl::Status Add(const std::string& device_id, const v1::TelemetryWindow& window);
  InferenceSide Finish() &&;

 private:
  InferenceSide side_;
  std::set<std::string> devices_;
};

// What the controller observed for the current wave's inference gates.
struct InferenceComparison {
  v1::InferenceControl control = v1::INFERENCE_CONTROL_UNSPECIFIED;
  std::string control_version;  // the previous version
  InferenceSide canary;
  InferenceSide control_side;
};

// The canaries' previous version by the rule above, from each canary's previous version ("" for
// none); nullopt when none has one.
std::optional<std::string> PreviousVersionOf(const std::vector<std::string>& previous_versions);

// The four inference gates, in the order of the Gate enum.
std::vector<v1::GateResult> EvaluateInferenceGates(const InferenceThresholds& thresholds,
                                                   const InferenceComparison& comparison);

// Whether `gate` is one of the inference gates.
bool IsInferenceGate(v1::Gate gate);

}  // namespace edgefleet::server::rollout
