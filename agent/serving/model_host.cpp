#include "agent/serving/model_host.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace edgefleet::agent {
namespace {

constexpr size_t kMaxLatencySamples = 4096;
// Warm-up inputs are sized from metadata the server sends; bound them (256 MiB of floats) so a
// bad shape is a refusal rather than an allocation failure that takes the agent down.
constexpr size_t kMaxWarmUpElements = size_t{1} << 26;

double Quantile(std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t index = static_cast<size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(index, sorted.size() - 1)];
}

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

std::shared_ptr<const ServingModel> ModelHost::Get(const std::string& model_name) const {
  std::lock_guard lock(mu_);
  auto it = serving_.find(model_name);
  return it == serving_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<const ServingModel>> ModelHost::All() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<const ServingModel>> all;
  for (const auto& [name, model] : serving_) all.push_back(model);
  return all;
}

std::shared_ptr<const ServingModel> ModelHost::Swap(std::shared_ptr<const ServingModel> model) {
  std::lock_guard lock(mu_);
  auto& slot = serving_[model->model_name];
  std::swap(slot, model);
  return model;
}

std::shared_ptr<const ServingModel> ModelHost::Remove(const std::string& model_name) {
  std::lock_guard lock(mu_);
  auto it = serving_.find(model_name);
  if (it == serving_.end()) return nullptr;
  std::shared_ptr<const ServingModel> removed = std::move(it->second);
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
  // Holding this shared_ptr keeps the version alive even if a swap happens meanwhile.
  std::shared_ptr<const ServingModel> model = Get(model_name);
  if (!model) return absl::NotFoundError(absl::StrCat("model '", model_name, "' is not serving"));
  auto start = std::chrono::steady_clock::now();
  auto outputs = model->engine->Run(inputs, output_names);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  Record(model->model_name, model->version, outputs.ok(),
         std::chrono::duration<double>(elapsed).count());
  // The version's own observer: reached through the pointer already held, no lock taken.
  if (model->observer) model->observer->OnAnswer(outputs, elapsed);
  if (!outputs.ok()) return outputs.status();
  return Prediction{model->version, *std::move(outputs)};
}

void ModelHost::Record(const std::string& model_name, const std::string& version, bool ok,
                       double seconds) {
  std::lock_guard lock(telemetry_mu_);
  Window& w = windows_[{model_name, version}];
  ++w.inference_count;
  if (!ok) ++w.error_count;
  w.sum_seconds += seconds;
  w.max_seconds = std::max(w.max_seconds, seconds);
  if (w.latencies_seconds.size() < kMaxLatencySamples) w.latencies_seconds.push_back(seconds);
}

std::vector<v1::ModelTelemetry> ModelHost::TakeTelemetry(
    std::chrono::system_clock::time_point now) {
  std::map<std::pair<std::string, std::string>, Window> windows;
  std::chrono::system_clock::time_point start;
  {
    std::lock_guard lock(telemetry_mu_);
    windows.swap(windows_);
    start = window_start_;
    window_start_ = now;
  }
  std::vector<v1::ModelTelemetry> out;
  for (auto& [key, w] : windows) {
    v1::ModelTelemetry t;
    t.set_model_name(key.first);
    t.set_version(key.second);
    t.set_inference_count(w.inference_count);
    t.set_error_count(w.error_count);
    std::sort(w.latencies_seconds.begin(), w.latencies_seconds.end());
    auto* latency = t.mutable_latency();
    latency->set_p50_seconds(Quantile(w.latencies_seconds, 0.50));
    latency->set_p95_seconds(Quantile(w.latencies_seconds, 0.95));
    latency->set_p99_seconds(Quantile(w.latencies_seconds, 0.99));
    latency->set_max_seconds(w.max_seconds);
    latency->set_sum_seconds(w.sum_seconds);
    t.mutable_window_start()->set_seconds(
        std::chrono::duration_cast<std::chrono::seconds>(start.time_since_epoch()).count());
    t.mutable_window_end()->set_seconds(
        std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace edgefleet::agent
