#include "agent/telemetry/window_recorder.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/core/logging.h"
#include "common/telemetry/reference_profile.h"
#include "common/telemetry/telemetry_codec.h"
#include "google/protobuf/util/time_util.h"

namespace edgefleet::agent {
namespace {

using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp ToTimestamp(std::chrono::system_clock::time_point t) {
  return TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

}  // namespace

absl::StatusOr<BinningProfile> BinningProfile::FromReference(const v1::ReferenceProfile& profile) {
  BinningProfile b;
  for (int i = 0; i < profile.features_size(); ++i) {
    std::vector<double> edges(profile.features(i).edges().begin(),
                              profile.features(i).edges().end());
    if (!telemetry::FeatureHistogram::ValidEdges(edges)) {
      return absl::InvalidArgumentError(
          absl::StrCat("reference profile: feature ", i,
                       " has edges that are not finite and strictly increasing"));
    }
    b.feature_edges.push_back(std::move(edges));
  }
  b.output_edges.assign(profile.outputs().edges().begin(), profile.outputs().edges().end());
  if (!telemetry::FeatureHistogram::ValidEdges(b.output_edges)) {
    return absl::InvalidArgumentError(
        "reference profile: the output edges are not finite and strictly increasing");
  }
  b.profile_sha256 = profile.profile_sha256();
  return b;
}

BinningProfile BinningFor(const v1::ModelVersion& metadata) {
  if (metadata.has_reference_profile()) {
    auto b = BinningProfile::FromReference(metadata.reference_profile());
    if (b.ok()) return *std::move(b);
    Logger("telemetry")
        ->error(
            "model={} version={}: stored reference profile unusable, binning by "
            "the default profile: {}",
            EscapeForLog(metadata.model_name()), EscapeForLog(metadata.version()),
            b.status().ToString());
  }
  // The default profile's edges are valid by construction.
  return *BinningProfile::FromReference(telemetry::DefaultProfile(metadata));
}

v1::PredictErrorReason ErrorReasonOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
      return v1::PREDICT_ERROR_REASON_INVALID_INPUT;
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kUnavailable:
      return v1::PREDICT_ERROR_REASON_OVERLOADED;
    default:
      return v1::PREDICT_ERROR_REASON_INFERENCE_FAILED;
  }
}

WindowRecorder::WindowRecorder(std::string model_name, std::string version, BinningProfile profile,
                               std::chrono::system_clock::time_point window_start)
    : model_name_(std::move(model_name)),
      version_(std::move(version)),
      profile_(std::move(profile)),
      window_(Fresh(window_start)) {}

WindowRecorder::Window WindowRecorder::Fresh(std::chrono::system_clock::time_point start) const {
  Window w{.start = start,
           .requests = 0,
           .errors = {},
           .latency = {},
           .features = {},
           .outputs = telemetry::FeatureHistogram(profile_.output_edges)};
  w.features.reserve(profile_.feature_edges.size());
  for (const auto& edges : profile_.feature_edges) w.features.emplace_back(edges);
  return w;
}

void WindowRecorder::Record(const std::vector<TensorData>& inputs,
                            const absl::StatusOr<std::vector<TensorData>>& answer,
                            std::chrono::nanoseconds latency) {
  // The extraction runs outside the lock: only the additions are serialised.
  thread_local std::vector<double> features;
  thread_local std::vector<double> outputs;
  size_t width = 0;
  if (!inputs.empty() && !profile_.feature_edges.empty())
    width = telemetry::ExtractFeatures(inputs[0].shape, inputs[0].data, features);
  // A request whose feature count differs from the profile's is not binned: mixing it in would
  // put values of one feature in another's histogram.
  if (width != profile_.feature_edges.size()) width = 0;
  std::optional<v1::PredictErrorReason> failed;
  if (!answer.ok()) {
    failed = ErrorReasonOf(answer.status());
  } else if (!AllFinite(*answer)) {
    failed = v1::PREDICT_ERROR_REASON_NON_FINITE_OUTPUT;
  } else if (!answer->empty()) {
    telemetry::ExtractOutputs(answer->front().shape, answer->front().data, outputs);
  }
  const double seconds = std::chrono::duration<double>(latency).count();

  std::lock_guard lock(mu_);
  ++window_.requests;
  if (failed) ++window_.errors[*failed];
  // A non-finite answer was still answered: its latency counts, its values are not outputs.
  if (answer.ok()) window_.latency.Add(seconds);
  if (!failed) {
    for (double v : outputs) window_.outputs.Add(v);
  }
  if (width > 0) {
    for (size_t i = 0; i < features.size(); ++i) window_.features[i % width].Add(features[i]);
  }
}

v1::TelemetryWindow WindowRecorder::Cut(std::chrono::system_clock::time_point now) {
  Window next = Fresh(now);
  Window done = [&] {
    std::lock_guard lock(mu_);
    return std::exchange(window_, std::move(next));
  }();
  v1::TelemetryWindow w;
  w.set_model_name(model_name_);
  w.set_version(version_);
  *w.mutable_window_start() = ToTimestamp(done.start);
  *w.mutable_window_end() = ToTimestamp(now);
  w.set_request_count(done.requests);
  for (const auto& [reason, count] : done.errors) {
    auto* e = w.add_errors();
    e->set_reason(reason);
    e->set_count(count);
  }
  *w.mutable_latency() = telemetry::ToProto(done.latency);
  for (const auto& f : done.features) *w.add_features() = telemetry::ToProto(f);
  *w.mutable_outputs() = telemetry::ToProto(done.outputs);
  w.set_profile_sha256(profile_.profile_sha256);
  return w;
}

}  // namespace edgefleet::agent
