// `edgefleetctl model push --reference SAMPLE.npy`: a version's reference profile from a sample
// of its inputs. Features come from the same extraction the agent runs on every request
// (common/telemetry/features.h) and the outputs from running the model on the sample with the
// agent's own engine (agent/engine, OpenCV DNN), so the profile describes what devices will see.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "cli/npy.h"
#include "edgefleet/v1/telemetry.pb.h"
#include "edgefleet/v1/types.pb.h"

namespace edgefleet::cli {

// `model` names the version's inputs and outputs (as declared, or as the graph states them).
// The sample must fit the first input: [N, F] rows for a vector input ([F] or [N, F]), or
// [N, C, H, W] images for an image input, every fixed dimension equal. InvalidArgument otherwise
// (and for a model whose first input is neither). Samples fewer than 1,000 are allowed: the
// profile's `samples` says how many there were, and drift on it reads as less certain.
absl::StatusOr<v1::ReferenceProfile> ReferenceFromSample(const std::string& model_path,
                                                         const v1::ModelVersion& model,
                                                         const NpyArray& sample);

}  // namespace edgefleet::cli
