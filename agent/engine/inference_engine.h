// The inference engine seam: runs a loaded model on named float tensors, so the agent's model
// serving and hot swap do not depend on a particular runtime (OpenCV DNN today).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace edgefleet::agent {

// A dense float32 tensor in row-major order; data.size() equals the product of shape.
struct TensorData {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Whether every value of every tensor is finite: a NaN or an infinity makes an answer useless
// (probation fails a version on one; telemetry counts it as an error).
inline bool AllFinite(const std::vector<TensorData>& tensors) {
  return std::all_of(tensors.begin(), tensors.end(), [](const TensorData& t) {
    return std::all_of(t.data.begin(), t.data.end(), [](float v) { return std::isfinite(v); });
  });
}

// One loaded model. Implementations are safe to call from many threads (the agent shares one
// engine per loaded model version through a std::shared_ptr and flips it on hot swap).
class InferenceEngine {
 public:
  virtual ~InferenceEngine() = default;

  // Runs the model. `output_names` empty means all model outputs, in OutputNames() order.
  // Malformed or unknown inputs give InvalidArgument.
  virtual absl::StatusOr<std::vector<TensorData>> Run(
      const std::vector<TensorData>& inputs, const std::vector<std::string>& output_names) = 0;

  // Names of the model's outputs.
  virtual std::vector<std::string> OutputNames() const = 0;

  // Runtime and version, for logs and telemetry (e.g. "opencv-dnn 4.6.0").
  virtual std::string RuntimeName() const = 0;
};

// Loads models into engines; a failed load has no side effects on engines already loaded.
class EngineFactory {
 public:
  virtual ~EngineFactory() = default;

  // NotFound when the file does not exist; InvalidArgument when it is not a loadable model.
  virtual absl::StatusOr<std::unique_ptr<InferenceEngine>> Load(const std::string& model_path) = 0;
};

}  // namespace edgefleet::agent
