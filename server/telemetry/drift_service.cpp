#include "server/telemetry/drift_service.h"

#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "server/telemetry/query_range.h"

namespace edgefleet::server::telemetry {

namespace et = edgefleet::telemetry;
using google::protobuf::util::TimeUtil;

namespace {

constexpr double kMaxPsiThreshold = 10;

google::protobuf::Timestamp ToTimestamp(Clock::TimePoint t) {
  return TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

et::DriftThresholds FromProto(const v1::DriftThresholds& proto) {
  return et::DriftThresholds{proto.warn(), proto.alert(), proto.min_samples()};
}

v1::DriftThresholds ToProto(const std::string& model_name,
                            const std::optional<DriftThresholdRecord>& record) {
  v1::DriftThresholds out;
  out.set_model_name(model_name);
  const et::DriftThresholds t = record.has_value() ? record->thresholds : et::DriftThresholds{};
  out.set_warn(t.warn);
  out.set_alert(t.alert);
  out.set_min_samples(t.min_samples);
  out.set_is_default(!record.has_value());
  if (record.has_value()) {
    *out.mutable_updated_at() = ToTimestamp(FromUnixSeconds(record->updated_at_unix));
  }
  return out;
}

}  // namespace

DriftGauges::DriftGauges(metrics::Registry& registry)
    : psi(registry.AddGauge(
          "edgefleet_drift_psi",
          "Population stability index of a model version's input feature (or \"output\") "
          "against its reference over the drift range; absent while data is insufficient.")),
      js_distance(registry.AddGauge(
          "edgefleet_drift_js_distance",
          "Jensen-Shannon distance (0..1) of a model version's input feature (or \"output\") "
          "against its reference over the drift range; absent while data is insufficient.")),
      warn_threshold(registry.AddGauge("edgefleet_drift_warn_threshold",
                                       "PSI above which a model's drift warns.")),
      alert_threshold(registry.AddGauge("edgefleet_drift_alert_threshold",
                                        "PSI above which a model's drift alerts.")) {}

absl::Status ValidateDriftThresholds(const v1::SetDriftThresholdsRequest& request) {
  if (request.model_name().empty()) return absl::InvalidArgumentError("model_name is required");
  if (!std::isfinite(request.warn()) || request.warn() <= 0) {
    return absl::InvalidArgumentError("warn must be a PSI above 0");
  }
  if (!std::isfinite(request.alert()) || request.alert() <= request.warn()) {
    return absl::InvalidArgumentError("alert must be above warn");
  }
  if (request.alert() > kMaxPsiThreshold) {
    return absl::InvalidArgumentError(absl::StrCat("alert must be at most ", kMaxPsiThreshold));
  }
  return absl::OkStatus();
}

DriftService::DriftService(Transactor& db, DriftThresholdStore& thresholds, DriftSources& sources,
                           const Clock& clock, DriftOptions options)
    : db_(db), thresholds_(thresholds), sources_(sources), clock_(clock), options_(options) {}

absl::StatusOr<v1::DriftThresholds> DriftService::ThresholdsOf(const std::string& model_name) {
  return db_.Transact("read drift thresholds", [&](Tx& tx) -> absl::StatusOr<v1::DriftThresholds> {
    auto record = thresholds_.Get(tx, model_name);
    if (!record.ok()) return record.status();
    return ToProto(model_name, *record);
  });
}

absl::StatusOr<v1::ModelDrift> DriftService::GetDrift(const v1::GetModelDriftRequest& request) {
  if (request.model_name().empty()) return absl::InvalidArgumentError("model_name is required");
  if (request.version().empty()) return absl::InvalidArgumentError("version is required");
  auto range = ResolveSeriesRange(request.from(), request.to(), request.step(), clock_.Now(),
                                  SeriesDefaults{.range = options_.range, .points = 0});
  if (!range.ok()) return range.status();
  const Clock::TimePoint from = range->from;
  const Clock::TimePoint to = range->to;
  const std::chrono::seconds step = range->step;

  auto reference = sources_.Reference(request.model_name(), request.version());
  if (!reference.ok()) return reference.status();
  auto thresholds = ThresholdsOf(request.model_name());
  if (!thresholds.ok()) return thresholds.status();

  v1::ModelDrift drift;
  drift.set_model_name(request.model_name());
  drift.set_version(request.version());
  drift.set_hw(request.hw());
  *drift.mutable_thresholds() = *thresholds;
  if (!reference->has_value()) {
    drift.set_note(
        "the version has no reference profile yet: none was pushed with it, and the fleet "
        "reference is made once enough of its windows have arrived");
    return drift;
  }
  drift.set_reference_source((*reference)->profile.source());
  drift.set_reference_samples((*reference)->profile.samples());
  std::optional<std::string> hw;
  if (!request.hw().empty()) hw = request.hw();
  auto series =
      sources_.ObservedSeries(request.model_name(), request.version(), hw, from, to, step);
  if (!series.ok()) return series.status();
  Clock::TimePoint start = from;
  for (const std::vector<ObservedBins>& observed : *series) {
    const Clock::TimePoint end = std::min(start + step, to);
    v1::DriftPoint* point = drift.add_points();
    *point = EvaluateDrift(**reference, observed, FromProto(*thresholds));
    *point->mutable_start() = ToTimestamp(start);
    *point->mutable_end() = ToTimestamp(end);
    start = end;
  }
  return drift;
}

absl::StatusOr<v1::DriftThresholds> DriftService::SetThresholds(
    Tx& tx, const std::string& who, const v1::SetDriftThresholdsRequest& request) {
  if (auto s = ValidateDriftThresholds(request); !s.ok()) return s;
  et::DriftThresholds t{
      request.warn(), request.alert(),
      request.min_samples() == 0 ? et::DriftThresholds{}.min_samples : request.min_samples()};
  auto record = thresholds_.Set(tx, request.model_name(), t, who, ToUnixSeconds(clock_.Now()));
  if (!record.ok()) return record.status();
  return ToProto(request.model_name(), *record);
}

absl::Status DriftService::RefreshGauges(DriftGauges& gauges) {
  auto range = ResolveSeriesRange("", "", "", clock_.Now(),
                                  SeriesDefaults{.range = options_.range, .points = 0});
  if (!range.ok()) return range.status();
  const Clock::TimePoint from = range->from;
  const Clock::TimePoint to = range->to;
  auto active = sources_.Active(from, to);
  if (!active.ok()) return active.status();

  std::set<metrics::Labels> published;
  std::set<metrics::Labels> published_thresholds;
  absl::Status first_error;
  // Several hw values share a version's reference and a model's thresholds: read each once.
  std::map<std::string, absl::StatusOr<v1::DriftThresholds>> thresholds_of;
  std::map<std::pair<std::string, std::string>, absl::StatusOr<std::optional<VersionReference>>>
      reference_of;
  for (const VersionKey& key : *active) {
    auto t = thresholds_of.find(key.model_name);
    if (t == thresholds_of.end()) {
      t = thresholds_of.emplace(key.model_name, ThresholdsOf(key.model_name)).first;
    }
    const std::pair<std::string, std::string> version{key.model_name, key.version};
    auto r = reference_of.find(version);
    if (r == reference_of.end()) {
      r = reference_of.emplace(version, sources_.Reference(key.model_name, key.version)).first;
    }
    const absl::StatusOr<v1::DriftThresholds>& thresholds = t->second;
    const absl::StatusOr<std::optional<VersionReference>>& reference = r->second;
    if (!thresholds.ok() || !reference.ok()) {
      if (first_error.ok())
        first_error = !thresholds.ok() ? thresholds.status() : reference.status();
      continue;
    }
    metrics::Labels model_labels{{"model", key.model_name}};
    gauges.warn_threshold.Add(model_labels).Set(thresholds->warn());
    gauges.alert_threshold.Add(model_labels).Set(thresholds->alert());
    published_thresholds.insert(model_labels);
    if (!reference->has_value()) continue;
    // One point: the resolved step covers the whole (minute-aligned) range.
    auto observed =
        sources_.ObservedSeries(key.model_name, key.version, key.hw, from, to, range->step);
    if (!observed.ok() || observed->size() != 1) {
      if (first_error.ok()) {
        first_error =
            !observed.ok() ? observed.status() : absl::InternalError("drift range: not one point");
      }
      continue;
    }
    const v1::DriftPoint point =
        EvaluateDrift(**reference, observed->front(), FromProto(*thresholds));
    auto publish = [&](const std::string& feature, const v1::DriftScore& score) {
      if (!score.has_psi()) return;  // insufficient data: no number, no series
      // hw only for devices that have one, as the edgefleet_inference_* families.
      metrics::Labels labels{
          {"model", key.model_name}, {"version", key.version}, {"feature", feature}};
      if (!key.hw.empty()) labels["hw"] = key.hw;
      gauges.psi.Add(labels).Set(score.psi());
      gauges.js_distance.Add(labels).Set(score.js_distance());
      published.insert(labels);
    };
    for (const v1::FeatureDrift& feature : point.features()) {
      publish(absl::StrCat(feature.feature()), feature.score());
    }
    if (point.has_outputs()) publish("output", point.outputs());
  }

  std::lock_guard<std::mutex> lock(gauges_mu_);
  for (const metrics::Labels& labels : published_) {
    if (published.count(labels) > 0) continue;
    gauges.psi.Remove(labels);
    gauges.js_distance.Remove(labels);
  }
  for (const metrics::Labels& labels : published_thresholds_) {
    if (published_thresholds.count(labels) > 0) continue;
    gauges.warn_threshold.Remove(labels);
    gauges.alert_threshold.Remove(labels);
  }
  published_ = std::move(published);
  published_thresholds_ = std::move(published_thresholds);
  return first_error;
}

}  // namespace edgefleet::server::telemetry
