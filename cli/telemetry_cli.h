// edgefleetctl's telemetry pieces that need no server: the rendering of a model version's stats
// series and of a device's latest telemetry windows.
#pragma once

#include <ostream>

#include "edgefleet/v1/admin.pb.h"

namespace edgefleet::cli {

// A table with one row per point (start, windows, requests, errors, error reasons, p50, p95,
// p99), then the totals.
void RenderModelStats(const v1::ModelStatsResponse& stats, std::ostream& out);
// One row per window, newest first.
void RenderDeviceTelemetry(const v1::DeviceTelemetryResponse& telemetry, std::ostream& out);

}  // namespace edgefleet::cli
