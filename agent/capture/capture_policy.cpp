#include "agent/capture/capture_policy.h"

#include <algorithm>
#include <cmath>

#include "common/telemetry/features.h"

namespace edgefleet::agent {

std::vector<FeatureRange> RangesFromReference(const v1::ReferenceProfile& profile) {
  std::vector<FeatureRange> ranges;
  bool any = false;
  for (const v1::FeatureReference& f : profile.features()) {
    ranges.push_back({f.min(), f.max()});
    any = any || f.min() != 0 || f.max() != 0;
  }
  if (!any) ranges.clear();
  return ranges;
}

std::optional<float> TopScore(const std::vector<TensorData>& outputs) {
  if (outputs.empty() || outputs.front().data.empty()) return std::nullopt;
  return *std::max_element(outputs.front().data.begin(), outputs.front().data.end());
}

bool OutOfRange(const std::vector<TensorData>& inputs, std::span<const FeatureRange> ranges) {
  if (inputs.empty() || ranges.empty()) return false;
  std::vector<double> features;
  const size_t width =
      telemetry::ExtractFeatures(inputs.front().shape, inputs.front().data, features);
  if (width == 0) return false;
  for (size_t i = 0; i < features.size(); ++i) {
    const size_t f = i % width;
    if (f >= ranges.size()) continue;
    const double v = features[i];
    if (std::isnan(v) || v < ranges[f].min || v > ranges[f].max) return true;
  }
  return false;
}

std::optional<v1::CaptureTrigger> DecideCapture(const v1::CaptureSpec& spec,
                                                const std::vector<TensorData>& inputs,
                                                const std::vector<TensorData>& outputs,
                                                std::span<const FeatureRange> ranges,
                                                const std::function<double()>& uniform) {
  if (!spec.enabled()) return std::nullopt;
  const double sample_rate = spec.sample_rate() == 0 ? 1.0 : spec.sample_rate();
  if (sample_rate < 1.0 && uniform() >= sample_rate) return std::nullopt;
  if (spec.has_confidence_below()) {
    const std::optional<float> top = TopScore(outputs);
    if (top.has_value() && static_cast<double>(*top) < spec.confidence_below()) {
      return v1::CAPTURE_TRIGGER_LOW_CONFIDENCE;
    }
  }
  if (spec.out_of_range() && OutOfRange(inputs, ranges)) return v1::CAPTURE_TRIGGER_OUT_OF_RANGE;
  if (spec.random_rate() > 0 && uniform() < spec.random_rate()) return v1::CAPTURE_TRIGGER_RANDOM;
  return std::nullopt;
}

}  // namespace edgefleet::agent
