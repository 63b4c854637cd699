#include "agent/capture/capturer.h"

#include <random>

#include "common/core/limits.h"
#include "common/core/logging.h"

namespace edgefleet::agent {
namespace {

void CopyTensors(const std::vector<TensorData>& from,
                 google::protobuf::RepeatedPtrField<v1::Tensor>* to) {
  for (const TensorData& t : from) {
    v1::Tensor* out = to->Add();
    out->set_name(t.name);
    out->mutable_shape()->Add(t.shape.begin(), t.shape.end());
    out->mutable_data()->Add(t.data.begin(), t.data.end());
  }
}

}  // namespace

v1::CaptureRecord MakeCaptureRecord(const ServingModel& model, const CaptureRequest& request,
                                    v1::CaptureTrigger trigger,
                                    const std::vector<TensorData>& inputs,
                                    const std::vector<TensorData>& outputs, Clock::TimePoint now) {
  v1::CaptureRecord record;
  record.set_model_name(model.model_name);
  record.set_version(model.version);
  const auto since_epoch = now.time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  record.mutable_captured_at()->set_seconds(seconds.count());
  record.mutable_captured_at()->set_nanos(static_cast<int32_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds).count()));
  record.set_trigger(trigger);
  CopyTensors(inputs, record.mutable_inputs());
  CopyTensors(outputs, record.mutable_outputs());
  record.set_upload_start_hour(request.spec.upload_start_hour());
  record.set_upload_end_hour(request.spec.upload_end_hour());
  return record;
}

Capturer::Capturer(StateStore& state, const Clock& clock, std::function<double()> uniform,
                   metrics::Registry* registry)
    : state_(state), clock_(clock), uniform_(std::move(uniform)) {
  if (!uniform_) {
    auto mu = std::make_shared<std::mutex>();
    auto rng = std::make_shared<std::mt19937_64>(std::random_device{}());
    uniform_ = [mu, rng] {
      std::lock_guard lock(*mu);
      return std::uniform_real_distribution<double>(0.0, 1.0)(*rng);
    };
  }
  if (registry != nullptr) {
    metric_ = &registry->AddCounter(
        "edgefleet_agent_captures_total",
        "Predict requests captured for the server, or not kept (over_cap: the day's byte cap; "
        "too_large: over what one upload holds; failed: the state store failed)");
  }
}

void Capturer::SetRequests(const std::vector<CaptureRequest>& requests) {
  std::map<std::string, std::shared_ptr<const CaptureRequest>> next;
  for (const CaptureRequest& r : requests) {
    if (r.spec.enabled()) next[r.model_name] = std::make_shared<const CaptureRequest>(r);
  }
  std::lock_guard lock(mu_);
  requests_.swap(next);
  any_.store(!requests_.empty(), std::memory_order_release);
}

void Capturer::Count(std::atomic<uint64_t>& counter, const char* result) {
  counter.fetch_add(1, std::memory_order_relaxed);
  if (metric_ != nullptr) metric_->Add({{"result", result}}).Increment();
}

void Capturer::OnRequest(const ServingModel& model, const std::vector<TensorData>& inputs,
                         const absl::StatusOr<std::vector<TensorData>>& answer) {
  if (!any_.load(std::memory_order_acquire) || !answer.ok()) return;
  std::shared_ptr<const CaptureRequest> request;
  {
    std::lock_guard lock(mu_);
    auto it = requests_.find(model.model_name);
    if (it == requests_.end()) return;
    request = it->second;
  }
  if (request->version != model.version) return;  // asked of another version of the model
  auto trigger = DecideCapture(request->spec, inputs, *answer, request->ranges, uniform_);
  if (!trigger.has_value()) return;
  const Clock::TimePoint now = clock_.Now();
  const std::string payload =
      MakeCaptureRecord(model, *request, *trigger, inputs, *answer, now).SerializeAsString();
  if (payload.size() > RequestLimits::kCaptureRecordBytes) {
    Count(too_large_, "too_large");
    return;
  }
  auto stored =
      state_.EnqueueCapture(payload, ToUnixSeconds(now), request->spec.max_bytes_per_day());
  if (!stored.ok()) {
    Count(failed_, "failed");
    Logger("capture")->warn("captured request lost: {}", stored.status().ToString());
    return;
  }
  Count(*stored ? captured_ : over_cap_, *stored ? "captured" : "over_cap");
}

Capturer::Counts Capturer::counts() const {
  return Counts{captured_.load(), over_cap_.load(), too_large_.load(), failed_.load()};
}

}  // namespace edgefleet::agent
