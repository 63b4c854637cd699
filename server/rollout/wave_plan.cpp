#include "server/rollout/wave_plan.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/capture/capture_spec.h"
#include "common/core/limits.h"
#include "common/core/names.h"

namespace edgefleet::server::rollout {
namespace {

using std::chrono::seconds;

// A percentage in basis points: finite, in [0, 100] (or (0, 100] when zero is not allowed), with
// at most two decimals so that it compares exactly.
absl::StatusOr<int64_t> PercentToBasisPoints(const std::string& field, double percent,
                                             bool allow_zero) {
  if (!std::isfinite(percent) || percent < 0 || percent > 100 || (!allow_zero && percent == 0)) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is ", percent, "; it must be in ",
                                                   allow_zero ? "[0, 100]" : "(0, 100]"));
  }
  const double scaled = percent * kBasisPointsPerPercent;
  const int64_t bp = std::llround(scaled);
  if (std::fabs(scaled - static_cast<double>(bp)) > 1e-6) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", percent, "; it may have at most two decimals"));
  }
  return bp;
}

double BasisPointsToPercent(int64_t bp) { return static_cast<double>(bp) / kBasisPointsPerPercent; }

absl::StatusOr<seconds> DurationToSeconds(const std::string& field,
                                          const google::protobuf::Duration& d, seconds max) {
  if (d.seconds() < 0 || d.nanos() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, " must not be negative"));
  }
  if (d.nanos() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, " must be whole seconds"));
  }
  if (d.seconds() > max.count()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", d.seconds(), " s; the limit is ", max.count(), " s"));
  }
  return seconds(d.seconds());
}

// Fills `out` from the fields `spec` sets, checking each; unset fields leave `out` as it is.
absl::Status ApplyGateSpec(const std::string& prefix, const v1::GateSpec& spec,
                           GateThresholds* out) {
  auto percent = [&](const char* name, bool has, double value, int64_t* field) -> absl::Status {
    if (!has) return absl::OkStatus();
    auto bp = PercentToBasisPoints(absl::StrCat(prefix, name), value, /*allow_zero=*/true);
    if (!bp.ok()) return bp.status();
    *field = *bp;
    return absl::OkStatus();
  };
  if (auto s = percent("max_install_failure_percent", spec.has_max_install_failure_percent(),
                       spec.max_install_failure_percent(), &out->max_install_failure_bp);
      !s.ok()) {
    return s;
  }
  if (auto s = percent("max_probation_failure_percent", spec.has_max_probation_failure_percent(),
                       spec.max_probation_failure_percent(), &out->max_probation_failure_bp);
      !s.ok()) {
    return s;
  }
  if (auto s = percent("max_timeout_percent", spec.has_max_timeout_percent(),
                       spec.max_timeout_percent(), &out->max_timeout_bp);
      !s.ok()) {
    return s;
  }
  if (auto s =
          percent("max_error_rate_increase_percent", spec.has_max_error_rate_increase_percent(),
                  spec.max_error_rate_increase_percent(), &out->inference.max_error_increase_bp);
      !s.ok()) {
    return s;
  }
  auto positive = [&](const char* name, bool has, double value, bool allow_zero,
                      double* field) -> absl::Status {
    if (!has) return absl::OkStatus();
    if (!std::isfinite(value) || value < 0 || (!allow_zero && value == 0)) {
      return absl::InvalidArgumentError(absl::StrCat(prefix, name, " is ", value,
                                                     "; it must be a finite number ",
                                                     allow_zero ? ">= 0" : "> 0"));
    }
    *field = value;
    return absl::OkStatus();
  };
  if (auto s = positive("max_latency_p99_ratio", spec.has_max_latency_p99_ratio(),
                        spec.max_latency_p99_ratio(), false, &out->inference.max_p99_ratio);
      !s.ok()) {
    return s;
  }
  if (auto s = positive("max_latency_p50_ratio", spec.has_max_latency_p50_ratio(),
                        spec.max_latency_p50_ratio(), false, &out->inference.max_p50_ratio);
      !s.ok()) {
    return s;
  }
  if (auto s = positive("max_output_psi", spec.has_max_output_psi(), spec.max_output_psi(), true,
                        &out->inference.max_output_psi);
      !s.ok()) {
    return s;
  }
  auto at_least_one = [&](const char* name, bool has, uint64_t value,
                          uint64_t* field) -> absl::Status {
    if (!has) return absl::OkStatus();
    if (value == 0) {
      return absl::InvalidArgumentError(absl::StrCat(prefix, name, " is 0; it must be at least 1"));
    }
    *field = value;
    return absl::OkStatus();
  };
  if (auto s = at_least_one("min_inferences", spec.has_min_inferences(), spec.min_inferences(),
                            &out->inference.min_inferences);
      !s.ok()) {
    return s;
  }
  if (auto s = at_least_one("min_inference_devices", spec.has_min_inference_devices(),
                            spec.min_inference_devices(), &out->inference.min_devices);
      !s.ok()) {
    return s;
  }
  if (spec.has_inference_gates()) out->inference.enabled = spec.inference_gates();
  if (spec.has_min_finished_devices()) out->min_finished_devices = spec.min_finished_devices();
  if (spec.has_max_probation_failures()) {
    out->max_probation_failures = spec.max_probation_failures();
  }
  if (spec.has_serving_timeout_seconds()) {
    const uint64_t timeout = spec.serving_timeout_seconds();
    if (timeout == 0 || timeout > static_cast<uint64_t>(kMaxServingTimeout.count())) {
      return absl::InvalidArgumentError(absl::StrCat(prefix, "serving_timeout_seconds is ", timeout,
                                                     "; it must be 1 to ",
                                                     kMaxServingTimeout.count()));
    }
    out->serving_timeout = seconds(timeout);
  }
  return absl::OkStatus();
}

std::vector<v1::WaveSpec> DefaultSpecs() {
  std::vector<v1::WaveSpec> specs(4);
  specs[0].set_percent(1);
  specs[0].set_min_devices(1);
  specs[1].set_percent(10);
  specs[2].set_percent(50);
  specs[3].set_percent(100);
  return specs;
}

}  // namespace

WavePlan DefaultPlan() { return *NormalizeWaves({}); }

WavePlan SingleWavePlan() {
  v1::WaveSpec all;
  all.set_percent(100);
  all.mutable_soak()->set_seconds(0);
  all.mutable_gates()->set_inference_gates(false);
  return *NormalizeWaves({all});
}

absl::StatusOr<WavePlan> NormalizeWaves(const std::vector<v1::WaveSpec>& given,
                                        const WaveDefaults& defaults) {
  const std::vector<v1::WaveSpec> specs = given.empty() ? DefaultSpecs() : given;
  if (specs.size() > RequestLimits::kRolloutWaves) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a rollout has at most ", RequestLimits::kRolloutWaves, " waves, not ", specs.size()));
  }
  GateThresholds base;
  if (auto s = ApplyGateSpec("gates.", defaults.gates, &base); !s.ok()) return s;

  WavePlan plan;
  int64_t last_percent_bp = 0;
  uint64_t last_count = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const v1::WaveSpec& spec = specs[i];
    const std::string at = absl::StrCat("waves[", i, "].");
    Wave wave;
    const bool has_percent = spec.percent() != 0;
    const bool has_count = spec.device_count() != 0;
    if (has_percent == has_count) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, "percent and ", at, "device_count: set exactly one"));
    }
    if (has_percent) {
      auto bp = PercentToBasisPoints(absl::StrCat(at, "percent"), spec.percent(), false);
      if (!bp.ok()) return bp.status();
      if (*bp < last_percent_bp) {
        return absl::InvalidArgumentError(
            absl::StrCat(at, "percent is ", spec.percent(), "; wave sizes must not decrease (",
                         BasisPointsToPercent(last_percent_bp), "% before it)"));
      }
      wave.percent_bp = last_percent_bp = *bp;
    } else {
      if (spec.device_count() < last_count) {
        return absl::InvalidArgumentError(absl::StrCat(at, "device_count is ", spec.device_count(),
                                                       "; wave sizes must not decrease (",
                                                       last_count, " devices before it)"));
      }
      wave.device_count = last_count = spec.device_count();
    }
    wave.min_devices = spec.min_devices();
    if (spec.has_soak()) {
      auto soak = DurationToSeconds(absl::StrCat(at, "soak"), spec.soak(), kMaxSoak);
      if (!soak.ok()) return soak.status();
      wave.soak = *soak;
    } else {
      wave.soak = defaults.soak.value_or(kDefaultSoak);
    }
    wave.gates = base;
    if (auto s = ApplyGateSpec(absl::StrCat(at, "gates."), spec.gates(), &wave.gates); !s.ok()) {
      return s;
    }
    plan.waves.push_back(wave);
  }
  const Wave& last = plan.waves.back();
  if (last.percent_bp != kAllBasisPoints) {
    return absl::InvalidArgumentError(
        absl::StrCat("the last wave (waves[", plan.waves.size() - 1, "]) is ", DescribeSize(last),
                     "; it must be 100% so that every matching device is covered"));
  }
  return plan;
}

v1::GateSpec ToProto(const GateThresholds& gates) {
  v1::GateSpec spec;
  spec.set_max_install_failure_percent(BasisPointsToPercent(gates.max_install_failure_bp));
  spec.set_min_finished_devices(gates.min_finished_devices);
  spec.set_max_probation_failure_percent(BasisPointsToPercent(gates.max_probation_failure_bp));
  if (gates.max_probation_failures.has_value()) {
    spec.set_max_probation_failures(*gates.max_probation_failures);
  }
  spec.set_serving_timeout_seconds(static_cast<uint64_t>(gates.serving_timeout.count()));
  spec.set_max_timeout_percent(BasisPointsToPercent(gates.max_timeout_bp));
  spec.set_max_latency_p99_ratio(gates.inference.max_p99_ratio);
  spec.set_max_latency_p50_ratio(gates.inference.max_p50_ratio);
  spec.set_max_error_rate_increase_percent(
      BasisPointsToPercent(gates.inference.max_error_increase_bp));
  spec.set_max_output_psi(gates.inference.max_output_psi);
  spec.set_min_inferences(gates.inference.min_inferences);
  spec.set_min_inference_devices(gates.inference.min_devices);
  spec.set_inference_gates(gates.inference.enabled);
  return spec;
}

v1::WaveSpec ToProto(const Wave& wave) {
  v1::WaveSpec spec;
  if (wave.percent_bp > 0) {
    spec.set_percent(BasisPointsToPercent(wave.percent_bp));
  } else {
    spec.set_device_count(wave.device_count);
  }
  spec.set_min_devices(wave.min_devices);
  spec.mutable_soak()->set_seconds(wave.soak.count());
  *spec.mutable_gates() = ToProto(wave.gates);
  return spec;
}

uint64_t CumulativeTarget(const WavePlan& plan, size_t index, uint64_t matching) {
  uint64_t covered = 0;
  for (size_t i = 0; i <= index && i < plan.waves.size(); ++i) {
    const Wave& wave = plan.waves[i];
    uint64_t size = wave.device_count;
    if (wave.percent_bp > 0) {
      // ceil(matching * bp / 10000) without overflow for any fleet size.
      const uint64_t bp = static_cast<uint64_t>(wave.percent_bp);
      const uint64_t whole = matching / kAllBasisPoints;
      const uint64_t rest = matching % kAllBasisPoints;
      size = whole * bp + (rest * bp + kAllBasisPoints - 1) / kAllBasisPoints;
    }
    size = std::min(std::max(size, wave.min_devices), matching);
    covered = std::max(covered, size);
  }
  if (index + 1 >= plan.waves.size()) covered = matching;
  return covered;
}

std::string DescribeSize(const Wave& wave) {
  if (wave.percent_bp > 0) return absl::StrCat(BasisPointsToPercent(wave.percent_bp), "%");
  return absl::StrCat(wave.device_count, wave.device_count == 1 ? " device" : " devices");
}

absl::StatusOr<RolloutDefinition> ValidateCreateRollout(const v1::CreateRolloutRequest& request) {
  RolloutDefinition def;
  if (auto s = ValidatePlainName("name", request.name()); !s.ok()) return s;
  if (auto s = ValidateModelName(request.model_name()); !s.ok()) return s;
  if (auto s = ValidateVersion(request.version()); !s.ok()) return s;
  auto selector = ParseLabelSelector(request.label_selector());
  if (!selector.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("label_selector: ", selector.status().message()));
  }
  if (!v1::RolloutFailureAction_IsValid(request.on_failure())) {
    return absl::InvalidArgumentError(
        absl::StrCat("on_failure ", request.on_failure(), " is not a failure action"));
  }
  WaveDefaults defaults;
  if (request.has_soak()) {
    auto soak = DurationToSeconds("soak", request.soak(), kMaxSoak);
    if (!soak.ok()) return soak.status();
    defaults.soak = *soak;
  }
  defaults.gates = request.gates();
  auto plan = NormalizeWaves({request.waves().begin(), request.waves().end()}, defaults);
  if (!plan.ok()) return plan.status();
  if (auto s = ::edgefleet::capture::ValidateCaptureSpec(request.capture()); !s.ok()) return s;

  def.name = request.name();
  def.model_name = request.model_name();
  def.version = request.version();
  def.label_selector = request.label_selector();
  def.selector = *std::move(selector);
  def.plan = *std::move(plan);
  if (request.capture().enabled()) def.capture = request.capture();
  if (request.on_failure() != v1::ROLLOUT_FAILURE_ACTION_UNSPECIFIED) {
    def.on_failure = request.on_failure();
  }
  return def;
}

absl::StatusOr<RolloutDefinition> DefinitionOf(const v1::Rollout& rollout) {
  v1::CreateRolloutRequest request;
  request.set_name(rollout.name());
  request.set_model_name(rollout.model_name());
  request.set_version(rollout.version());
  request.set_label_selector(rollout.label_selector());
  request.set_on_failure(rollout.on_failure());
  *request.mutable_capture() = rollout.capture();
  for (const v1::WaveStatus& wave : rollout.waves()) *request.add_waves() = wave.spec();
  if (rollout.waves().empty()) {
    return absl::InternalError(absl::StrCat("stored rollout '", rollout.name(), "' has no waves"));
  }
  auto definition = ValidateCreateRollout(request);
  if (!definition.ok()) {
    return absl::InternalError(
        absl::StrCat("stored rollout '", rollout.name(),
                     "' does not validate: ", definition.status().message()));
  }
  return definition;
}

v1::Rollout NewRollout(const RolloutDefinition& definition) {
  v1::Rollout rollout;
  rollout.set_name(definition.name);
  rollout.set_model_name(definition.model_name);
  rollout.set_version(definition.version);
  rollout.set_label_selector(definition.label_selector);
  rollout.set_on_failure(definition.on_failure);
  rollout.set_state(v1::ROLLOUT_STATE_PENDING);
  if (definition.capture.enabled()) *rollout.mutable_capture() = definition.capture;
  for (size_t i = 0; i < definition.plan.waves.size(); ++i) {
    v1::WaveStatus* wave = rollout.add_waves();
    wave->set_index(static_cast<uint32_t>(i));
    *wave->mutable_spec() = ToProto(definition.plan.waves[i]);
    wave->set_state(v1::WAVE_STATE_PENDING);
  }
  return rollout;
}

}  // namespace edgefleet::server::rollout
