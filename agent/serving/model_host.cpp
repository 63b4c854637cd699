#include "agent/serving/model_host.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace edgefleet::agent {
namespace {

// Warm-up inputs are sized from metadata the server sends; bound them (256 MiB of floats) so a
// bad shape is a refusal rather than an allocation failure that takes the agent down.
constexpr size_t kMaxWarmUpElements = size_t{1} << 26;

}  // namespace

absl::Status WarmUp(InferenceEngine& engine, const v1::ModelVersion& metadata) {
  if (metadata.inputs().empty()) {
    return absl::FailedPreconditionError(
        "model metadata declares no inputs, so the model cannot be warmed up");
  }
  std::vector<TensorData> inputs;
  for (const v1::TensorSpec& spec : metadata.inputs()) {
    TensorData tensor{spec.name(), {}, {}};
    size_t count = 1;
    for (int64_t d : spec.shape()) {
      tensor.shape.push_back(d < 0 ? 1 : d);
      const size_t dim = static_cast<size_t>(tensor.shape.back());
      if (dim != 0 && count > kMaxWarmUpElements / dim) {
        return absl::FailedPreconditionError(absl::StrCat(
            "input '", spec.name(), "' declares more than ", kMaxWarmUpElements, " elements"));
      }
      count *= dim;
    }
    tensor.data.assign(count, 0.0f);
    inputs.push_back(std::move(tensor));
  }
  auto outputs = engine.Run(inputs, {});
  if (!outputs.ok())
    return absl::FailedPreconditionError(
        absl::StrCat("warm-up inference: ", outputs.status().message()));
  if (outputs->empty())
    return absl::FailedPreconditionError("warm-up inference returned no outputs");
  for (const TensorData& out : *outputs) {
    for (float v : out.data) {
      if (!std::isfinite(v)) {
        return absl::FailedPreconditionError(
            absl::StrCat("warm-up output '", out.name, "' is not finite"));
      }
    }
  }
  return absl::OkStatus();
}

ModelHost::Entry ModelHost::GetEntry(const std::string& model_name) const {
  std::lock_guard lock(mu_);
  auto it = serving_.find(model_name);
  return it == serving_.end() ? Entry{} : it->second;
}

std::shared_ptr<const ServingModel> ModelHost::Get(const std::string& model_name) const {
  return GetEntry(model_name).model;
}

std::vector<std::shared_ptr<const ServingModel>> ModelHost::All() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<const ServingModel>> all;
  for (const auto& [name, entry] : serving_) all.push_back(entry.model);
  return all;
}

std::shared_ptr<const ServingModel> ModelHost::Replace(Entry* slot,
                                                       std::shared_ptr<const ServingModel> model) {
  const Clock* clock = window_clock_.load();
  const auto now = clock != nullptr ? clock->Now() : std::chrono::system_clock::now();
  if (slot->telemetry) retired_.push_back(slot->telemetry->Cut(now));
  slot->telemetry = nullptr;
  if (model && record_telemetry_) {
    slot->telemetry = std::make_shared<WindowRecorder>(model->model_name, model->version,
                                                       BinningFor(model->metadata), now);
  }
  std::swap(slot->model, model);
  return model;
}

std::shared_ptr<const ServingModel> ModelHost::Swap(std::shared_ptr<const ServingModel> model) {
  std::lock_guard lock(mu_);
  Entry* slot = &serving_[model->model_name];  // before `model` is moved from
  return Replace(slot, std::move(model));
}

std::shared_ptr<const ServingModel> ModelHost::Remove(const std::string& model_name) {
  std::lock_guard lock(mu_);
  auto it = serving_.find(model_name);
  if (it == serving_.end()) return nullptr;
  std::shared_ptr<const ServingModel> removed = Replace(&it->second, nullptr);
  serving_.erase(it);
  return removed;
}

absl::StatusOr<Prediction> ModelHost::Predict(const std::string& model_name,
                                              const std::vector<TensorData>& inputs,
                                              const std::vector<std::string>& output_names) {
  absl::StatusOr<Prediction> answer = absl::InternalError("inference did not run");
  // A refusal (queue full) is not an answer of any version: it is neither recorded nor observed.
  if (absl::Status queued =
          pool_.Run([&] { answer = PredictHere(model_name, inputs, output_names); });
      !queued.ok()) {
    return queued;
  }
  return answer;
}

absl::StatusOr<Prediction> ModelHost::PredictHere(const std::string& model_name,
                                                  const std::vector<TensorData>& inputs,
                                                  const std::vector<std::string>& output_names) {
  // Holding these shared_ptrs keeps the version (and its window) alive even if a swap happens
  // meanwhile.
  const auto [model, telemetry] = GetEntry(model_name);
  if (!model) return absl::NotFoundError(absl::StrCat("model '", model_name, "' is not serving"));
  auto start = std::chrono::steady_clock::now();
  auto outputs = model->engine->Run(inputs, output_names);
  const auto end = std::chrono::steady_clock::now();
  const auto elapsed = end - start;
  last_request_.store(end.time_since_epoch().count(), std::memory_order_relaxed);
  if (telemetry) telemetry->Record(inputs, outputs, elapsed);
  if (tap_ != nullptr) tap_->OnRequest(*model, inputs, outputs);
  // The version's own observer: reached through the pointer already held, no lock taken.
  if (model->observer) model->observer->OnAnswer(outputs, elapsed);
  if (!outputs.ok()) return outputs.status();
  return Prediction{model->version, *std::move(outputs)};
}

std::vector<v1::TelemetryWindow> ModelHost::CutTelemetry(
    std::chrono::system_clock::time_point now) {
  std::vector<v1::TelemetryWindow> windows;
  std::vector<std::shared_ptr<WindowRecorder>> recorders;
  {
    std::lock_guard lock(mu_);
    windows.swap(retired_);
    for (const auto& [name, entry] : serving_) {
      if (entry.telemetry) recorders.push_back(entry.telemetry);
    }
  }
  for (const auto& recorder : recorders) windows.push_back(recorder->Cut(now));
  return windows;
}

}  // namespace edgefleet::agent
