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
      devices_unseen(registry.AddGauge(
          "edgefleet_devices_unseen",
          "Active devices whose last check-in is older than longer_than (5m, 15m, 1h, 6h, 1d, "
          "7d), read from the database at each scrape (fleet-wide: take max over replicas)")),
      check_ins(registry.AddCounter("edgefleet_device_check_ins_total", "Device check-ins")),
      artifact_bytes_served(registry.AddCounter("edgefleet_artifact_bytes_served_total",
                                                "Artifact bytes sent to devices, by kind")),
      artifact_fetches(registry.AddCounter(
          "edgefleet_artifact_fetches_total",
          "Artifact downloads begun by devices, by kind and whether they start at byte 0 or "
          "resume an interrupted one")),
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
      patches(registry.AddGauge("edgefleet_patches",
                                "Differential patches by state (pending: queued or computing; "
                                "ready; not_smaller; failed), read from the database at each "
                                "scrape (fleet-wide: take max over replicas)")),
      patch_oldest_pending_age(registry.AddGauge(
          "edgefleet_patch_oldest_pending_age_seconds",
          "Age of the oldest pending (queued or computing) patch, 0 when none is pending")),
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
      inference_requests(registry.AddCounter(
          "edgefleet_inference_requests_total",
          "Predict requests devices answered or failed, from the telemetry roll-ups, by model, "
          "version and hw (what this replica's roll-up job merged: sum over replicas)")),
      inference_errors(registry.AddCounter(
          "edgefleet_inference_errors_total",
          "Failed Predict requests from the telemetry roll-ups, by model, version, hw and reason "
          "(what this replica's roll-up job merged: sum over replicas)")),
      inference_latency(registry.AddHistogram(
          "edgefleet_inference_latency_seconds",
          "Predict latency of answered requests on devices, from the merged latency sketches, by "
          "model, version and hw (what this replica's roll-up job merged: sum over replicas)",
          InferenceLatencyBuckets())),
      telemetry_devices_reporting(registry.AddGauge(
          "edgefleet_telemetry_devices_reporting",
          "Devices whose telemetry windows started in the last minutes (--telemetry-devices-"
          "reporting-minutes), by model, version and hw (fleet-wide: take max over replicas)")),
      telemetry_rollup_windows(registry.AddCounter(
          "edgefleet_telemetry_rollup_windows_total",
          "Telemetry windows this replica's roll-up job merged into the roll-ups")),
      telemetry_windows_dropped(registry.AddCounter(
          "edgefleet_telemetry_windows_dropped_total",
          "Telemetry windows agents report they lost, by reason (outbox_full: dropped to keep "
          "the outbox within its budget; refused: refused for good by the server)")),

      captures(registry.AddCounter(
          "edgefleet_captures_total",
          "Captured requests received from devices, by result (stored, duplicate, or refused: "
          "oversize, over_cap, not_requested, malformed)")),
      capture_bytes(registry.AddCounter("edgefleet_capture_bytes_total",
                                        "Bytes of captured requests stored")) {}

std::vector<double> InferenceLatencyBuckets() { return metrics::DefaultLatencyBuckets(); }

}  // namespace edgefleet::server
