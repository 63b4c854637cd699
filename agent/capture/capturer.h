// Captures Predict requests the releases ask for (DesiredModel.capture): on the request path,
// after the inference, it decides (capture_policy.h) and keeps a captured request's inputs and
// outputs in the outbox within the day's byte cap (StateStore::EnqueueCapture, which counts the
// day's bytes across restarts). With nothing asked it costs one atomic load per request; with
// capture on, a short lock and a draw, and a copy only of what it captures.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/capture/capture_policy.h"
#include "agent/serving/model_host.h"
#include "agent/state/state_store.h"
#include "common/core/clock.h"
#include "common/metrics/metrics.h"
#include "edgefleet/v1/capture.pb.h"

namespace edgefleet::agent {

// What a release asks of one model: capture requests answered by `version` under `spec`.
struct CaptureRequest {
  std::string model_name;
  std::string version;
  v1::CaptureSpec spec;
  // The version's per-feature reference ranges (RangesFromReference); empty: the out-of-range
  // trigger never fires.
  std::vector<FeatureRange> ranges;
};

class Capturer final : public RequestTap {
 public:
  // `uniform` draws from [0, 1) and must be safe to call from many threads; null: a seeded
  // generator behind a lock. `registry` (may be null) gets edgefleet_agent_captures_total.
  Capturer(StateStore& state, const Clock& clock, std::function<double()> uniform = nullptr,
           metrics::Registry* registry = nullptr);

  // Replaces what is asked: at most one request per model (the version it is targeted with).
  void SetRequests(const std::vector<CaptureRequest>& requests);

  void OnRequest(const ServingModel& model, const std::vector<TensorData>& inputs,
                 const absl::StatusOr<std::vector<TensorData>>& answer) override;

  // Requests captured, refused by the day's cap, too large to keep, or failed to store.
  struct Counts {
    uint64_t captured = 0;
    uint64_t over_cap = 0;
    uint64_t too_large = 0;
    uint64_t failed = 0;
  };
  Counts counts() const;

 private:
  void Count(std::atomic<uint64_t>& counter, const char* result);

  StateStore& state_;
  const Clock& clock_;
  std::function<double()> uniform_;
  metrics::Family<metrics::Counter>* metric_ = nullptr;
  std::atomic<bool> any_{false};
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const CaptureRequest>> requests_;  // guarded by mu_
  std::atomic<uint64_t> captured_{0}, over_cap_{0}, too_large_{0}, failed_{0};
};

// The CaptureRecord of a captured request (inputs and outputs copied).
v1::CaptureRecord MakeCaptureRecord(const ServingModel& model, const CaptureRequest& request,
                                    v1::CaptureTrigger trigger,
                                    const std::vector<TensorData>& inputs,
                                    const std::vector<TensorData>& outputs, Clock::TimePoint now);

}  // namespace edgefleet::agent
