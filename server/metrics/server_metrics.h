// Every metric the server exports, declared once and built from the registry.
#pragma once

#include <chrono>
#include <vector>

#include "common/metrics/metrics.h"

namespace edgefleet::server {

struct ServerMetrics {
  explicit ServerMetrics(metrics::Registry& registry);

  metrics::Family<metrics::Counter>& rpc_requests;    // {service, method, code}
  metrics::Family<metrics::Histogram>& rpc_duration;  // {service, method}
  metrics::Family<metrics::Counter>& http_requests;   // {route, status}
  metrics::Family<metrics::Gauge>& devices;           // {status}
  // {longer_than}: active devices whose last check-in is older than one of kUnseenLimits.
  metrics::Family<metrics::Gauge>& devices_unseen;
  metrics::Family<metrics::Counter>& check_ins;              // {}
  metrics::Family<metrics::Counter>& artifact_bytes_served;  // {kind}: full or patch
  metrics::Family<metrics::Counter>& artifact_fetches;       // {kind, from}: start or resume
  metrics::Family<metrics::Counter>& enrollments;            // {result}
  metrics::Family<metrics::Counter>& update_events;          // {kind, reason}
  metrics::Family<metrics::Counter>& models_pushed;          // {}
  metrics::Family<metrics::Counter>& patches_computed;       // {result}: ready, not_smaller, failed
  metrics::Family<metrics::Histogram>& patch_compute_seconds;  // {}
  metrics::Family<metrics::Gauge>& patches;  // {state}: pending, ready, not_smaller, failed
  metrics::Family<metrics::Gauge>& patch_oldest_pending_age;  // {}: 0 when none is pending
  metrics::Family<metrics::Counter>&
      patch_bytes_saved;                      // {}: full size minus patch size, per served patch
  metrics::Family<metrics::Gauge>& rollouts;  // {state}
  metrics::Family<metrics::Counter>& rollout_gate_evaluations;  // {gate, result}
  metrics::Family<metrics::Gauge>& rollout_targets;             // {state}: per-device targets
  // {result}: stored, duplicate (an earlier delivery stored it), or why it was refused
  // (malformed, future, expired, unknown_model).
  metrics::Family<metrics::Counter>& telemetry_windows;
  // Fleet inference telemetry from the roll-ups, by {model, version} plus {hw} for devices with
  // an hw label (none for devices without: Prometheus treats an empty label as absent); never by
  // device. Counters count what THIS replica's roll-up job merged, so they are monotonic here
  // and sum across replicas (each window is rolled up by exactly one replica).
  metrics::Family<metrics::Counter>& inference_requests;         // {model, version, hw}
  metrics::Family<metrics::Counter>& inference_errors;           // {model, version, hw, reason}
  metrics::Family<metrics::Histogram>& inference_latency;        // {model, version, hw}
  metrics::Family<metrics::Gauge>& telemetry_devices_reporting;  // {model, version, hw}
  metrics::Family<metrics::Counter>& telemetry_rollup_windows;   // {}: windows this replica merged
  metrics::Family<metrics::Counter>& telemetry_windows_dropped;
  // {result}: stored, duplicate, or why it was refused (oversize, over_cap, not_requested,
  // malformed).
  metrics::Family<metrics::Counter>& captures;
  metrics::Family<metrics::Counter>& capture_bytes;  // payload bytes stored
};

// The ages edgefleet_devices_unseen counts devices against: a fixed, small set of label values
// so that an alert picks its limit by label (`{longer_than="1h"}`).
struct UnseenLimit {
  const char* label;
  std::chrono::seconds age;
};
inline constexpr UnseenLimit kUnseenLimits[] = {
    {"5m", std::chrono::minutes(5)}, {"15m", std::chrono::minutes(15)},
    {"1h", std::chrono::hours(1)},   {"6h", std::chrono::hours(6)},
    {"1d", std::chrono::hours(24)},  {"7d", std::chrono::hours(24 * 7)}};

// The latency histogram's classic buckets, 0.5 ms .. 10 s (built from the merged sketches).
std::vector<double> InferenceLatencyBuckets();

}  // namespace edgefleet::server
