#include "server/metrics/server_metrics.h"

namespace edgefleet::server {

ServerMetrics::ServerMetrics(metrics::Registry& registry)
    : rpc_requests(
          registry.AddCounter("edgefleet_grpc_requests_total",
                              "gRPC requests handled, by service, method and status code")),
      rpc_duration(registry.AddHistogram("edgefleet_grpc_request_duration_seconds",
                                         "gRPC request latency by service and method",
                                         metrics::DefaultLatencyBuckets())),
      http_requests(registry.AddCounter("edgefleet_http_requests_total",
                                        "Admin HTTP requests, by route and status")),
      devices(registry.AddGauge("edgefleet_devices", "Registered devices by status")),
      check_ins(registry.AddCounter("edgefleet_device_check_ins_total", "Device check-ins")),
      artifact_bytes_served(registry.AddCounter("edgefleet_artifact_bytes_served_total",
                                                "Artifact bytes sent to devices, by kind")),
      enrollments(
          registry.AddCounter("edgefleet_enrollments_total", "Enrollment attempts by result")),
      update_events(registry.AddCounter("edgefleet_update_events_total",
                                        "Update events reported by devices, by kind and reason")),
      models_pushed(
          registry.AddCounter("edgefleet_model_versions_pushed_total", "Model versions published")),
      patches_computed(registry.AddCounter("edgefleet_patches_computed_total",
                                           "Differential patches computed, by result")),
      patch_compute_seconds(registry.AddHistogram(
          "edgefleet_patch_compute_seconds", "Time to compute one differential patch",
          {0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300})),
      patch_bytes_saved(registry.AddCounter("edgefleet_patch_bytes_saved_total",
                                            "Bytes devices did not download because a patch was "
                                            "served instead of the full artifact")),
      rollouts(registry.AddGauge("edgefleet_rollouts", "Rollouts by state")),
      rollout_gate_evaluations(registry.AddCounter(
          "edgefleet_rollout_gate_evaluations_total",
          "Rollout wave gate evaluations by the controller, by gate and result")),
      rollout_targets(
          registry.AddGauge("edgefleet_rollout_targets", "Per-device rollout targets by state")),
      telemetry_windows(registry.AddCounter(
          "edgefleet_telemetry_windows_total",
          "Telemetry windows received from devices, by result (stored, duplicate, or refused: "
          "malformed, future, expired, unknown_model)")),
      captures(registry.AddCounter(
          "edgefleet_captures_total",
          "Captured requests received from devices, by result (stored, duplicate, or refused: "
          "oversize, over_cap, not_requested, malformed)")),
      capture_bytes(registry.AddCounter("edgefleet_capture_bytes_total",
                                        "Bytes of captured requests stored")) {}

}  // namespace edgefleet::server
