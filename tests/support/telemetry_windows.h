// Telemetry windows shaped like a real agent's (a latency sketch of about 50 buckets, feature
// histograms of 11 bins, a class histogram of the outputs), for tests that need many or large
// valid windows and for the ingest benchmark (bench/telemetry_ingest).
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "edgefleet/v1/telemetry.pb.h"

namespace edgefleet::test {

struct WindowShape {
  int features = 8;         // histograms of 11 bins each (a vector input's elements)
  int classes = 3;          // the outputs' class histogram
  uint64_t requests = 600;  // Predicts in the window
};

// A window of `model`/`version` over [start_unix, start_unix + length_seconds), its statistics
// drawn from `rng`; sequence 0 (the outbox assigns it). It passes the server's window check.
v1::TelemetryWindow MakeTelemetryWindow(std::mt19937_64& rng, const WindowShape& shape,
                                        const std::string& model, const std::string& version,
                                        int64_t start_unix, int64_t length_seconds);

}  // namespace edgefleet::test
