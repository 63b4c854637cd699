// Which Predict requests are captured: pure functions of a release's CaptureSpec, the request,
// its answer, the version's per-feature reference ranges and a random draw.
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "agent/engine/inference_engine.h"
#include "edgefleet/v1/capture.pb.h"
#include "edgefleet/v1/telemetry.pb.h"

namespace edgefleet::agent {

// A feature's range in the version's reference sample: values outside [min, max] are new.
struct FeatureRange {
  double min = 0;
  double max = 0;
};

// The ranges a reference profile states (FeatureReference.min/max), one per feature; empty when
// it states none (every range 0..0), and then the out-of-range trigger never fires.
std::vector<FeatureRange> RangesFromReference(const v1::ReferenceProfile& profile);

// The largest value of the first output (a classifier's top class probability, a regressor's
// score); nullopt without outputs.
std::optional<float> TopScore(const std::vector<TensorData>& outputs);

// Whether a feature of the first input (common/telemetry ExtractFeatures: elements of a vector
// input, channels of an image) lies outside its range; features beyond `ranges` are not judged.
bool OutOfRange(const std::vector<TensorData>& inputs, std::span<const FeatureRange> ranges);

// The trigger that captures this answered request, or nullopt. `uniform` draws from [0, 1): once
// for the sample rate (is the request considered at all?) and, when no other trigger fired, once
// for the random trigger. Confidence is judged before range, range before chance.
std::optional<v1::CaptureTrigger> DecideCapture(const v1::CaptureSpec& spec,
                                                const std::vector<TensorData>& inputs,
                                                const std::vector<TensorData>& outputs,
                                                std::span<const FeatureRange> ranges,
                                                const std::function<double()>& uniform);

}  // namespace edgefleet::agent
