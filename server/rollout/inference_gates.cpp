#include "server/rollout/inference_gates.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/telemetry/drift.h"
#include "common/telemetry/telemetry_codec.h"

namespace edgefleet::server::rollout {
namespace {

__extension__ typedef __int128 Int128;

const char* ControlName(v1::InferenceControl control) {
  switch (control) {
    case v1::INFERENCE_CONTROL_LIVE:
      return "live control";
    case v1::INFERENCE_CONTROL_BEFORE_WAVE:
      return "the same devices before the wave";
    case v1::INFERENCE_CONTROL_NONE:
      return "no control";
    default:
      return "control";
  }
}

std::string SideText(absl::string_view name, const InferenceSide& side) {
  return absl::StrCat(name, " ", side.inferences, " inferences on ", side.devices, " devices");
}

// "canary 120 inferences on 3 devices, control (live control, version 1) 80 inferences on 2
// devices".
std::string SidesText(const InferenceComparison& c) {
  if (c.control == v1::INFERENCE_CONTROL_UNSPECIFIED) {
    return absl::StrCat(SideText("canary", c.canary),
                        ", control not chosen yet (no canary serves the version)");
  }
  return absl::StrCat(SideText("canary", c.canary), ", ",
                      SideText(absl::StrCat("control (", ControlName(c.control), ", version ",
                                            c.control_version, ")"),
                               c.control_side));
}

v1::GateResult Base(v1::Gate gate, double threshold, const InferenceThresholds& t,
                    const InferenceComparison& c) {
  v1::GateResult r;
  r.set_gate(gate);
  r.set_threshold(threshold);
  r.set_devices(std::min(c.canary.devices, c.control_side.devices));
  r.set_min_devices(t.min_devices);
  r.set_control(c.control);
  r.set_control_version(c.control_version);
  r.set_canary_devices(c.canary.devices);
  r.set_control_devices(c.control_side.devices);
  r.set_canary_inferences(c.canary.inferences);
  r.set_control_inferences(c.control_side.inferences);
  r.set_min_inferences(t.min_inferences);
  return r;
}

v1::GateResult With(v1::GateResult r, v1::GateOutcome outcome, std::string detail) {
  r.set_result(outcome);
  r.set_detail(std::move(detail));
  return r;
}

std::string Ms(double seconds) { return absl::StrFormat("%.3f ms", seconds * 1000); }

v1::GateResult LatencyGate(v1::Gate gate, double q, double max_ratio, const InferenceThresholds& t,
                           const InferenceComparison& c) {
  v1::GateResult r = Base(gate, max_ratio, t, c);
  const std::string name = absl::StrCat("p", static_cast<int>(std::lround(q * 100)));
  std::optional<double> canary = c.canary.latency.Quantile(q);
  std::optional<double> control = c.control_side.latency.Quantile(q);
  if (!canary.has_value() || !control.has_value()) {
    return With(
        std::move(r), v1::GATE_OUTCOME_INCONCLUSIVE,
        absl::StrCat("no answered request on the ", canary.has_value() ? "control" : "canary",
                     " side (", SidesText(c), ")"));
  }
  r.set_canary_value(*canary);
  r.set_control_value(*control);
  double ratio = 1.0;
  if (*control > 0) {
    ratio = *canary / *control;
  } else if (*canary > 0) {
    ratio = std::numeric_limits<double>::infinity();
  }
  r.set_value(ratio);
  const bool fail = ratio > max_ratio;
  return With(
      std::move(r), fail ? v1::GATE_OUTCOME_FAIL : v1::GATE_OUTCOME_PASS,
      absl::StrFormat("%s %s canary / %s control = %.3f %s %.3f", name.c_str(), Ms(*canary).c_str(),
                      Ms(*control).c_str(), ratio, fail ? ">" : "<=", max_ratio));
}

double PercentOf(uint64_t part, uint64_t whole) {
  return whole == 0 ? 0.0 : 100.0 * static_cast<double>(part) / static_cast<double>(whole);
}

v1::GateResult ErrorGate(const InferenceThresholds& t, const InferenceComparison& c) {
  const double threshold = static_cast<double>(t.max_error_increase_bp) / kBasisPointsPerPercent;
  v1::GateResult r = Base(v1::GATE_ERROR_RATE_INCREASE, threshold, t, c);
  const double canary = PercentOf(c.canary.errors, c.canary.inferences);
  const double control = PercentOf(c.control_side.errors, c.control_side.inferences);
  r.set_canary_value(canary);
  r.set_control_value(control);
  r.set_value(canary - control);
  // ce/cn - ke/kn > bp/10000, exactly: (ce*kn - ke*cn) * 10000 > bp * cn * kn.
  const Int128 cn = c.canary.inferences;
  const Int128 kn = c.control_side.inferences;
  const Int128 lhs = (static_cast<Int128>(c.canary.errors) * kn -
                      static_cast<Int128>(c.control_side.errors) * cn) *
                     kAllBasisPoints;
  const bool fail = lhs > static_cast<Int128>(t.max_error_increase_bp) * cn * kn;
  return With(std::move(r), fail ? v1::GATE_OUTCOME_FAIL : v1::GATE_OUTCOME_PASS,
              absl::StrFormat("errors %d of %d canary (%.2f%%) against %d of %d control (%.2f%%): "
                              "%+.2f points %s %.2f",
                              c.canary.errors, c.canary.inferences, canary, c.control_side.errors,
                              c.control_side.inferences, control, canary - control,
                              fail ? ">" : "<=", threshold));
}

uint64_t Sum(const std::vector<uint64_t>& bins) {
  uint64_t n = 0;
  for (uint64_t b : bins) n += b;
  return n;
}

v1::GateResult PsiGate(const InferenceThresholds& t, const InferenceComparison& c) {
  v1::GateResult r = Base(v1::GATE_OUTPUT_PSI, t.max_output_psi, t, c);
  // The binning both sides have the most outputs of; a single bin is no histogram.
  const std::vector<uint64_t>* canary = nullptr;
  const std::vector<uint64_t>* control = nullptr;
  uint64_t best = 0;
  for (const auto& [key, bins] : c.canary.outputs) {
    auto other = c.control_side.outputs.find(key);
    if (key.second < 2 || other == c.control_side.outputs.end()) continue;
    const uint64_t shared = std::min(Sum(bins), Sum(other->second));
    if (canary == nullptr || shared > best) {
      canary = &bins;
      control = &other->second;
      best = shared;
    }
  }
  if (canary == nullptr) {
    return With(std::move(r), v1::GATE_OUTCOME_NOT_APPLICABLE,
                c.canary.outputs.empty() || c.control_side.outputs.empty()
                    ? "no output histogram to compare"
                    : "canary and control outputs are binned by different reference profiles");
  }
  telemetry::DriftThresholds drift;
  drift.warn = t.max_output_psi;
  drift.alert = std::numeric_limits<double>::infinity();
  drift.min_samples = t.min_inferences;
  const telemetry::DriftScore score = telemetry::ScoreDrift(*control, *canary, drift);
  if (!score.psi.has_value()) {
    return With(
        std::move(r), v1::GATE_OUTCOME_INCONCLUSIVE,
        absl::StrCat("outputs binned: ", score.current_samples, " canary, ",
                     score.reference_samples, " control; ", t.min_inferences, " needed per side"));
  }
  r.set_value(*score.psi);
  const bool fail = *score.psi > t.max_output_psi;
  return With(std::move(r), fail ? v1::GATE_OUTCOME_FAIL : v1::GATE_OUTCOME_PASS,
              absl::StrFormat("output PSI %.4f over %d canary and %d control outputs %s %.4f",
                              *score.psi, score.current_samples, score.reference_samples,
                              fail ? ">" : "<=", t.max_output_psi));
}

constexpr v1::Gate kInferenceGates[] = {v1::GATE_LATENCY_P99_RATIO, v1::GATE_LATENCY_P50_RATIO,
                                        v1::GATE_ERROR_RATE_INCREASE, v1::GATE_OUTPUT_PSI};

double ThresholdOf(v1::Gate gate, const InferenceThresholds& t) {
  switch (gate) {
    case v1::GATE_LATENCY_P99_RATIO:
      return t.max_p99_ratio;
    case v1::GATE_LATENCY_P50_RATIO:
      return t.max_p50_ratio;
    case v1::GATE_ERROR_RATE_INCREASE:
      return static_cast<double>(t.max_error_increase_bp) / kBasisPointsPerPercent;
    default:
      return t.max_output_psi;
  }
}

}  // namespace

absl::Status InferenceSideBuilder::Add(const std::string& device_id,
                                       const v1::TelemetryWindow& window) {
  auto latency = telemetry::FromProto(window.latency());
  if (!latency.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("telemetry window ", window.sequence(),
                                                   " of device ", device_id, ": ",
                                                   latency.status().message()));
  }
  uint64_t errors = 0;
  for (const v1::PredictErrorCount& e : window.errors()) errors += e.count();
  side_.inferences += window.request_count();
  side_.errors += errors;
  side_.latency.Merge(*latency);
  if (window.request_count() > 0 && devices_.insert(device_id).second) ++side_.devices;
  const int64_t start = window.window_start().seconds();
  if (!side_.first_window_start_unix.has_value() || start < *side_.first_window_start_unix) {
    side_.first_window_start_unix = start;
  }
  const auto& bins = window.outputs().bins();
  if (!bins.empty()) {
    std::vector<uint64_t>& sum =
        side_.outputs[{window.profile_sha256(), static_cast<size_t>(bins.size())}];
    sum.resize(static_cast<size_t>(bins.size()), 0);
    for (int i = 0; i < bins.size(); ++i) sum[static_cast<size_t>(i)] += bins[i];
  }
  return absl::OkStatus();
}

InferenceSide InferenceSideBuilder::Finish() && { return std::move(side_); }

std::optional<std::string> PreviousVersionOf(const std::vector<std::string>& previous_versions) {
  std::map<std::string, size_t> counts;
  for (const std::string& v : previous_versions) {
    if (!v.empty()) ++counts[v];
  }
  std::optional<std::string> best;
  size_t best_count = 0;
  for (const auto& [version, n] : counts) {  // by name: the first of a tie wins
    if (n > best_count) {
      best = version;
      best_count = n;
    }
  }
  return best;
}

std::vector<v1::GateResult> EvaluateInferenceGates(const InferenceThresholds& t,
                                                   const InferenceComparison& c) {
  std::vector<v1::GateResult> results;
  if (c.control == v1::INFERENCE_CONTROL_NONE) {
    for (v1::Gate gate : kInferenceGates) {
      results.push_back(With(Base(gate, ThresholdOf(gate, t), t, c),
                             v1::GATE_OUTCOME_NOT_APPLICABLE,
                             "no previous version: the wave's devices ran no version of the model "
                             "before (a first install), there is nothing to compare"));
    }
    return results;
  }
  const bool enough = c.canary.inferences >= t.min_inferences &&
                      c.control_side.inferences >= t.min_inferences &&
                      c.canary.devices >= t.min_devices && c.control_side.devices >= t.min_devices;
  if (!enough) {
    const std::string detail =
        absl::StrCat(SidesText(c), "; at least ", t.min_inferences, " inferences on ",
                     t.min_devices, " devices needed per side");
    for (v1::Gate gate : kInferenceGates) {
      results.push_back(
          With(Base(gate, ThresholdOf(gate, t), t, c), v1::GATE_OUTCOME_INCONCLUSIVE, detail));
    }
    return results;
  }
  results.push_back(LatencyGate(v1::GATE_LATENCY_P99_RATIO, 0.99, t.max_p99_ratio, t, c));
  results.push_back(LatencyGate(v1::GATE_LATENCY_P50_RATIO, 0.50, t.max_p50_ratio, t, c));
  results.push_back(ErrorGate(t, c));
  results.push_back(PsiGate(t, c));
  return results;
}

bool IsInferenceGate(v1::Gate gate) {
  return std::find(std::begin(kInferenceGates), std::end(kInferenceGates), gate) !=
         std::end(kInferenceGates);
}

}  // namespace edgefleet::server::rollout
