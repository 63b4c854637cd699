#include "cli/reference_sample.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/engine/opencv_engine.h"
#include "common/telemetry/features.h"
#include "common/telemetry/reference_profile.h"

namespace edgefleet::cli {
namespace {

std::string Dims(const auto& shape) {
  std::vector<std::string> parts;
  for (int64_t d : shape) parts.push_back(d < 0 ? "?" : absl::StrCat(d));
  return absl::StrJoin(parts, "x");
}

// Whether the sample's per-sample dimensions fit the input's (open ones fit anything).
absl::Status CheckFits(const v1::TensorSpec& input, const NpyArray& sample) {
  const auto& spec = input.shape();
  const auto mismatch = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "the sample's shape ", Dims(sample.shape), " does not fit the model's first input '",
        input.name(), "' of shape ", Dims(spec),
        " (it needs [N, F] rows for a vector input or [N, C, H, W] images for an image input)"));
  };
  std::vector<int64_t> per_sample;  // the input's dimensions after the batch one
  if (spec.size() == 1) {
    per_sample = {spec[0]};
  } else if (spec.size() == 2 || spec.size() == 4) {
    per_sample.assign(spec.begin() + 1, spec.end());
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("the model's first input '", input.name(), "' has shape ", Dims(spec),
                     ": a reference sample fits vector ([N, F]) or image ([N, C, H, W]) inputs"));
  }
  if (sample.shape.size() != per_sample.size() + 1) return mismatch();
  for (size_t i = 0; i < per_sample.size(); ++i) {
    if (per_sample[i] >= 0 && per_sample[i] != sample.shape[i + 1]) return mismatch();
  }
  if (sample.shape[0] == 0) return absl::InvalidArgumentError("the sample has no rows");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::ReferenceProfile> ReferenceFromSample(const std::string& model_path,
                                                         const v1::ModelVersion& model,
                                                         const NpyArray& sample) {
  if (model.inputs().empty()) {
    return absl::InvalidArgumentError("the model declares no inputs to match the sample against");
  }
  const v1::TensorSpec& input = model.inputs(0);
  if (auto s = CheckFits(input, sample); !s.ok()) return s;
  const auto rows = static_cast<size_t>(sample.shape[0]);
  const size_t per_row = sample.data.size() / rows;

  std::vector<double> features;
  const size_t width = telemetry::ExtractFeatures(sample.shape, sample.data, features);
  const size_t feature_count = telemetry::FeatureCountOf(model);
  // The server expects the model's feature count: none when the model has none to watch.
  if (feature_count == 0) features.clear();
  if (feature_count != 0 && width != feature_count) {
    return absl::InvalidArgumentError(
        absl::StrCat("the sample has ", width, " features per row; the model has ", feature_count));
  }

  // The outputs: the model run on each sample alone (a batch of one fits any first dimension
  // the graph leaves open or sets to 1); other inputs are zeros, as in the agent's warm-up.
  auto factory = agent::MakeOpenCvEngineFactory();
  auto engine = factory->Load(model_path);
  if (!engine.ok()) return engine.status();
  std::vector<agent::TensorData> inputs;
  for (const v1::TensorSpec& spec : model.inputs()) {
    agent::TensorData t{spec.name(), {}, {}};
    size_t count = 1;
    for (int64_t d : spec.shape()) {
      t.shape.push_back(d < 0 ? 1 : d);
      count *= static_cast<size_t>(t.shape.back());
    }
    t.data.assign(count, 0.0f);
    inputs.push_back(std::move(t));
  }
  agent::TensorData& first = inputs[0];
  if (first.shape.size() == 1) {
    first.shape = {static_cast<int64_t>(per_row)};
  } else {
    first.shape = sample.shape;
    first.shape[0] = 1;
  }
  first.data.resize(per_row);
  std::vector<double> outputs;
  std::vector<double> values;
  for (size_t r = 0; r < rows; ++r) {
    std::copy_n(sample.data.begin() + static_cast<ptrdiff_t>(r * per_row), per_row,
                first.data.begin());
    auto answer = (*engine)->Run(inputs, {});
    if (!answer.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("running the model on sample ", r, ": ", answer.status().message()));
    }
    // A non-finite answer is an error on a device, not an output value.
    if (answer->empty() || !agent::AllFinite(*answer)) continue;
    telemetry::ExtractOutputs(answer->front().shape, answer->front().data, values);
    outputs.insert(outputs.end(), values.begin(), values.end());
  }
  return telemetry::ComputeProfile(features, feature_count, outputs,
                                   telemetry::ClassCountOf(model));
}

}  // namespace edgefleet::cli
