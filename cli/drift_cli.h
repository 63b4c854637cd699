// edgefleetctl's drift pieces that need no server: requests built from flags and the human
// rendering of a model version's drift.
#pragma once

#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "cli/args.h"
#include "edgefleet/v1/admin.pb.h"
#include "edgefleet/v1/telemetry.pb.h"

namespace edgefleet::cli {

// `model drift NAME VERSION [--from T] [--to T] [--step D] [--hw H]`: the times are passed as
// typed (the server parses them, so "-2h" means two hours before the server's now).
v1::GetModelDriftRequest DriftRequestFromFlags(const std::string& model, const std::string& version,
                                               const ParsedArgs& args);

// `model drift-thresholds NAME --warn X --alert Y [--min-samples N]`. InvalidArgument naming
// the flag on a bad value.
absl::StatusOr<v1::SetDriftThresholdsRequest> DriftThresholdsRequestFromFlags(
    const std::string& model, const ParsedArgs& args);

// The reference and thresholds, then one row per feature (and the outputs) of each point:
// PSI, JS distance, level and the samples on both sides.
void RenderDrift(const v1::ModelDrift& drift, std::ostream& out);
void RenderDriftThresholds(const v1::DriftThresholds& thresholds, std::ostream& out);

}  // namespace edgefleet::cli
