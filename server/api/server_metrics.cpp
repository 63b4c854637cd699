#include "server/api/server_metrics.h"

namespace edgefleet::server {

ServerMetrics::ServerMetrics(metrics::Registry& registry)
    : rpc_requests(registry.AddCounter("edgefleet_grpc_requests_total",
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
      enrollments(registry.AddCounter("edgefleet_enrollments_total", "Enrollment attempts by result")),
      update_events(registry.AddCounter("edgefleet_update_events_total",
                                        "Update events reported by devices, by kind and reason")),
      models_pushed(registry.AddCounter("edgefleet_model_versions_pushed_total",
                                        "Model versions published")) {}

}  // namespace edgefleet::server
