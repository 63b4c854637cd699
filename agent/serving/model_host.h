// The models an agent is serving right now. Each model name maps to one immutable
// ServingModel behind a shared_ptr: a swap flips the pointer, and requests already running
// keep the old model alive until they finish (no unload-then-load gap).
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/engine/inference_engine.h"
#include "agent/serving/inference_pool.h"
#include "agent/telemetry/window_recorder.h"
#include "common/core/clock.h"
#include "edgefleet/v1/device.pb.h"
#include "edgefleet/v1/types.pb.h"

namespace edgefleet::agent {

// Sees every answer of one serving version (the probation watch, the recent latencies that the
// next version is compared with). Called on the request's thread after the inference: it must be
// cheap, must not block, and must be safe to call from many threads at once.
class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  virtual void OnAnswer(const absl::StatusOr<std::vector<TensorData>>& answer,
                        std::chrono::nanoseconds latency) = 0;
};

struct ServingModel;

// Sees every answered or failed request of every model (field data capture). Called on the
// request's thread after the inference: it must be cheap when it has nothing to do and safe to
// call from many threads at once.
class RequestTap {
 public:
  virtual ~RequestTap() = default;
  virtual void OnRequest(const ServingModel& model, const std::vector<TensorData>& inputs,
                         const absl::StatusOr<std::vector<TensorData>>& answer) = 0;
};

struct ServingModel {
  std::string model_name;
  std::string version;
  v1::ModelVersion metadata;  // input/output spec
  std::shared_ptr<InferenceEngine> engine;
  std::shared_ptr<RequestObserver> observer;  // may be null
};

struct Prediction {
  std::string version;  // the version that answered
  std::vector<TensorData> outputs;
};

// Runs a zero-filled inference on every declared input (dynamic dimensions as 1) and checks
// that outputs come back finite: a model that cannot answer must not be swapped in.
absl::Status WarmUp(InferenceEngine& engine, const v1::ModelVersion& metadata);

class ModelHost {
 public:
  // Inferences run on `inference` threads owned by the host (see InferencePool). Without
  // `record_telemetry` no WindowRecorder sits on the request path and CutTelemetry cuts nothing
  // (the agent's --disable-telemetry).
  explicit ModelHost(InferencePoolOptions inference = {}, bool record_telemetry = true)
      : record_telemetry_(record_telemetry), pool_(inference) {}

  std::shared_ptr<const ServingModel> Get(const std::string& model_name) const;
  std::vector<std::shared_ptr<const ServingModel>> All() const;
  // Installs `model` as the serving version of its name; returns the one it replaced.
  std::shared_ptr<const ServingModel> Swap(std::shared_ptr<const ServingModel> model);
  // Stops serving the model (a rollback with no version to go back to); returns what served.
  std::shared_ptr<const ServingModel> Remove(const std::string& model_name);

  // Runs on one of the host's inference threads and waits for the answer. NotFound when no
  // version of the model is serving; InvalidArgument for bad inputs; ResourceExhausted when
  // the inference queue is full.
  absl::StatusOr<Prediction> Predict(const std::string& model_name,
                                     const std::vector<TensorData>& inputs,
                                     const std::vector<std::string>& output_names);

  // Set once, before the first Predict (the host does not own it; null: none).
  void SetRequestTap(RequestTap* tap) { tap_ = tap; }
  // The clock that starts telemetry windows at a swap (the release trust's server-corrected
  // time, so that a device clock a day off does not date its windows a day off); set before the
  // first Swap, not owned; the system clock until then.
  void SetWindowClock(const Clock* clock) { window_clock_.store(clock); }

  // When the last Predict reached a model (steady clock); the epoch when none has.
  std::chrono::steady_clock::time_point LastRequest() const {
    return std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(last_request_.load(std::memory_order_relaxed)));
  }

  // Predict requests waiting for an inference thread right now.
  size_t InferenceWaiting() const { return pool_.waiting(); }

  // Field telemetry, cut at `now`: one window per serving version (quiet ones included: a
  // device that served nothing says so), plus the last, partial window of every version swapped
  // out since the previous call. Each swap starts a new window.
  std::vector<v1::TelemetryWindow> CutTelemetry(std::chrono::system_clock::time_point now);

 private:
  // A serving version and the recorder of its current telemetry window.
  struct Entry {
    std::shared_ptr<const ServingModel> model;
    std::shared_ptr<WindowRecorder> telemetry;  // null when the host records no telemetry
  };
  Entry GetEntry(const std::string& model_name) const;
  // Starts `model`'s telemetry and retires the replaced version's recorder; `mu_` held.
  std::shared_ptr<const ServingModel> Replace(Entry* slot,
                                              std::shared_ptr<const ServingModel> model);
  absl::StatusOr<Prediction> PredictHere(const std::string& model_name,
                                         const std::vector<TensorData>& inputs,
                                         const std::vector<std::string>& output_names);

  const bool record_telemetry_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> serving_;  // guarded by mu_
  // The last, partial windows of versions swapped out since the last cut, cut at the swap.
  std::vector<v1::TelemetryWindow> retired_;  // guarded by mu_
  RequestTap* tap_ = nullptr;
  std::atomic<const Clock*> window_clock_{nullptr};
  std::atomic<std::chrono::steady_clock::rep> last_request_{0};

  // Last: its threads finish what they run before the serving table goes away.
  InferencePool pool_;
};

}  // namespace edgefleet::agent
