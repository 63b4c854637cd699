#include "cli/rollout_cli.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/output.h"
#include "cli/parsers.h"
#include "common/core/labels.h"
#include "common/rollout/wave_sizes.h"

namespace edgefleet::cli {
namespace {

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

absl::Status BadFlag(const std::string& flag, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", problem));
}

absl::StatusOr<v1::RolloutFailureAction> ParseOnFailure(const std::string& text) {
  if (text == "pause") return v1::ROLLOUT_FAILURE_ACTION_PAUSE;
  if (text == "abort") return v1::ROLLOUT_FAILURE_ACTION_ABORT;
  if (text == "rollback") return v1::ROLLOUT_FAILURE_ACTION_ROLLBACK;
  return BadFlag("on-failure", absl::StrCat("want pause, abort or rollback, not '", text, "'"));
}

// A percentage in [0, 100].
absl::StatusOr<double> ParsePercent(const std::string& flag, const std::string& text) {
  double value = 0;
  if (!absl::SimpleAtod(text, &value) || !(value >= 0 && value <= 100)) {
    return BadFlag(flag, absl::StrCat("want a percentage from 0 to 100, not '", text, "'"));
  }
  return value;
}

std::string Percent(double value) { return absl::StrCat(value, "%"); }

std::string WaveSize(const v1::WaveSpec& spec) {
  if (spec.device_count() > 0) return absl::StrCat(spec.device_count(), " devices");
  return Percent(spec.percent());
}

std::string Seconds(int64_t s) {
  if (s != 0 && s % 3600 == 0) return absl::StrCat(s / 3600, "h");
  if (s != 0 && s % 60 == 0) return absl::StrCat(s / 60, "m");
  return absl::StrCat(s, "s");
}

std::string GateName(v1::Gate gate) { return ShortEnumName(v1::Gate_Name(gate), 1); }
std::string GateOutcomeName(v1::GateOutcome outcome) {
  return ShortEnumName(v1::GateOutcome_Name(outcome), 2);
}
std::string WaveStateName(v1::WaveState state) {
  return ShortEnumName(v1::WaveState_Name(state), 2);
}

// Percent gates read "2.5%"; the probation count gate is a count; latency ratios read "1.18x",
// PSI a plain number, the error rate increase "+0.3 pts".
std::string GateValue(v1::Gate gate, double value) {
  switch (gate) {
    case v1::GATE_PROBATION_FAILURE_COUNT:
      return absl::StrCat(value);
    case v1::GATE_LATENCY_P99_RATIO:
    case v1::GATE_LATENCY_P50_RATIO:
      return absl::StrFormat("%.3gx", value);
    case v1::GATE_OUTPUT_PSI:
      return absl::StrFormat("%.4f", value);
    case v1::GATE_ERROR_RATE_INCREASE:
      return absl::StrFormat("%+.2f pts", value);
    default:
      return Percent(value);
  }
}

bool IsInferenceGate(v1::Gate gate) {
  return gate == v1::GATE_LATENCY_P99_RATIO || gate == v1::GATE_LATENCY_P50_RATIO ||
         gate == v1::GATE_ERROR_RATE_INCREASE || gate == v1::GATE_OUTPUT_PSI;
}

// What a gate's value is over: devices finished (min N), or for inference gates both sides'
// inferences and devices against their minimums.
std::string GateBasis(const v1::GateResult& g) {
  if (!IsInferenceGate(g.gate())) return absl::StrCat(g.devices(), " (min ", g.min_devices(), ")");
  return absl::StrCat(g.canary_inferences(), "/", g.canary_devices(), " vs ",
                      g.control_inferences(), "/", g.control_devices(), " (min ",
                      g.min_inferences(), "/", g.min_devices(), ")");
}

std::string Actor(const v1::RolloutEvent& e) {
  if (e.actor() == v1::ROLLOUT_ACTOR_OPERATOR) return absl::StrCat("operator ", e.operator_name());
  if (e.actor() == v1::ROLLOUT_ACTOR_CONTROLLER) return "controller";
  return "-";
}

}  // namespace

absl::StatusOr<v1::CreateRolloutRequest> CreateRolloutRequestFromFlags(const std::string& name,
                                                                       const ParsedArgs& args) {
  v1::CreateRolloutRequest req;
  req.set_name(name);
  std::optional<std::string> model = args.Get("model");
  if (!model.has_value() || model->empty()) {
    return absl::InvalidArgumentError("--model is required");
  }
  req.set_model_name(*model);
  std::optional<std::string> version = args.Get("version");
  if (!version.has_value() || version->empty()) {
    return absl::InvalidArgumentError("--version is required");
  }
  req.set_version(*version);
  if (auto selector = args.Get("selector")) {
    if (absl::StatusOr<Labels> s = ParseLabelSelector(*selector); !s.ok()) {
      return BadFlag("selector", std::string(s.status().message()));
    }
    req.set_label_selector(*selector);
  }
  if (auto waves = args.Get("waves")) {
    auto specs = rollout::ParseWaveSizes(*waves);
    if (!specs.ok()) return BadFlag("waves", std::string(specs.status().message()));
    if (specs->empty()) return BadFlag("waves", "give at least one wave (10%,50%,100%)");
    for (v1::WaveSpec& spec : *specs) *req.add_waves() = std::move(spec);
  }
  if (auto soak = args.Get("soak")) {
    // "0" means no soak at all; an unset soak would mean the default hour.
    uint64_t seconds = 0;
    if (*soak != "0" && *soak != "0s") {
      absl::StatusOr<uint64_t> parsed = ParseDurationSeconds(*soak);
      if (!parsed.ok()) return BadFlag("soak", std::string(parsed.status().message()));
      seconds = *parsed;
    }
    req.mutable_soak()->set_seconds(static_cast<int64_t>(seconds));
  }
  if (auto pct = args.Get("max-failure-pct")) {
    absl::StatusOr<double> value = ParsePercent("max-failure-pct", *pct);
    if (!value.ok()) return value.status();
    req.mutable_gates()->set_max_install_failure_percent(*value);
    req.mutable_gates()->set_max_probation_failure_percent(*value);
  }
  if (auto min = args.Get("min-devices")) {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(*min, &n) || n == 0) {
      return BadFlag("min-devices", absl::StrCat("want a positive number, not '", *min, "'"));
    }
    req.mutable_gates()->set_min_finished_devices(n);
  }
  if (auto pct = args.Get("max-error-increase-pct")) {
    absl::StatusOr<double> value = ParsePercent("max-error-increase-pct", *pct);
    if (!value.ok()) return value.status();
    req.mutable_gates()->set_max_error_rate_increase_percent(*value);
  }
  struct NumberFlag {
    const char* flag;
    void (v1::GateSpec::*set)(double);
    bool allow_zero;
  };
  for (const NumberFlag& f :
       {NumberFlag{"max-p99-ratio", &v1::GateSpec::set_max_latency_p99_ratio, false},
        NumberFlag{"max-p50-ratio", &v1::GateSpec::set_max_latency_p50_ratio, false},
        NumberFlag{"max-output-psi", &v1::GateSpec::set_max_output_psi, true}}) {
    auto text = args.Get(f.flag);
    if (!text.has_value()) continue;
    double value = 0;
    if (!absl::SimpleAtod(*text, &value) || !std::isfinite(value) || value < 0 ||
        (!f.allow_zero && value == 0)) {
      return BadFlag(f.flag, absl::StrCat("want a number ", f.allow_zero ? ">= 0" : "> 0",
                                          ", not '", *text, "'"));
    }
    (req.mutable_gates()->*f.set)(value);
  }
  struct CountFlag {
    const char* flag;
    void (v1::GateSpec::*set)(uint64_t);
  };
  for (const CountFlag& f :
       {CountFlag{"min-inferences", &v1::GateSpec::set_min_inferences},
        CountFlag{"min-inference-devices", &v1::GateSpec::set_min_inference_devices}}) {
    auto text = args.Get(f.flag);
    if (!text.has_value()) continue;
    uint64_t n = 0;
    if (!absl::SimpleAtoi(*text, &n) || n == 0) {
      return BadFlag(f.flag, absl::StrCat("want a positive number, not '", *text, "'"));
    }
    (req.mutable_gates()->*f.set)(n);
  }
  if (auto on = args.Get("inference-gates")) {
    if (*on != "on" && *on != "off") {
      return BadFlag("inference-gates", absl::StrCat("want on or off, not '", *on, "'"));
    }
    req.mutable_gates()->set_inference_gates(*on == "on");
  }
  if (auto action = args.Get("on-failure")) {
    absl::StatusOr<v1::RolloutFailureAction> parsed = ParseOnFailure(*action);
    if (!parsed.ok()) return parsed.status();
    req.set_on_failure(*parsed);
  }
  return req;
}

bool IsFinalRolloutState(v1::RolloutState state) {
  return state == v1::ROLLOUT_STATE_SUCCEEDED || state == v1::ROLLOUT_STATE_ABORTED ||
         state == v1::ROLLOUT_STATE_ROLLED_BACK;
}

std::string RolloutStateName(v1::RolloutState state) {
  return ShortEnumName(v1::RolloutState_Name(state), 2);
}

void RenderRollout(const v1::Rollout& r, std::ostream& out) {
  const std::string on_failure =
      r.on_failure() == v1::ROLLOUT_FAILURE_ACTION_UNSPECIFIED
          ? "PAUSE"
          : ShortEnumName(v1::RolloutFailureAction_Name(r.on_failure()), 3);
  std::string wave = "-";
  if (r.waves_size() > 0) {
    wave = absl::StrCat(r.current_wave(), " (of 0-", r.waves_size() - 1, ")");
    if (r.promote_requested()) absl::StrAppend(&wave, ", promotion requested");
  }
  std::vector<std::pair<std::string, std::string>> fields = {
      {"Name", r.name()},
      {"State", RolloutStateName(r.state())},
      {"Model", absl::StrCat(r.model_name(), " ", r.version())},
      {"Selector", r.label_selector().empty() ? "(all devices)" : r.label_selector()},
      {"On failure", on_failure},
      {"Current wave", wave},
      {"Matching", absl::StrCat(r.matching_devices(), " devices")},
      {"Created", absl::StrCat(FormatTimestamp(r.created_at()), " by ", OrDash(r.created_by()))},
      {"Updated", FormatTimestamp(r.updated_at())},
      {"Finished", FormatTimestamp(r.finished_at())}};
  if (!r.description().empty()) fields.emplace_back("Description", r.description());
  RenderFields(fields, out);

  out << "\nWaves:\n";
  Table waves({"WAVE", "SIZE", "STATE", "TARGETED", "SERVING", "FAILED", "IN PROGRESS", "TIMED OUT",
               "ROLLED BACK", "SOAK", "STARTED"});
  for (const v1::WaveStatus& w : r.waves()) {
    waves.AddRow({absl::StrCat(w.index()), WaveSize(w.spec()), WaveStateName(w.state()),
                  absl::StrCat(w.targeted()), absl::StrCat(w.serving()), absl::StrCat(w.failed()),
                  absl::StrCat(w.in_progress()), absl::StrCat(w.timed_out()),
                  absl::StrCat(w.rolled_back()),
                  w.spec().has_soak() ? Seconds(w.spec().soak().seconds()) : "-",
                  FormatTimestamp(w.started_at())});
  }
  waves.Render(out);

  // Inference gates' DEVICES read "canary inferences/devices vs control inferences/devices".
  Table gates({"WAVE", "GATE", "RESULT", "VALUE", "THRESHOLD", "DEVICES", "DETAIL"});
  for (const v1::WaveStatus& w : r.waves()) {
    for (const v1::GateResult& g : w.gates()) {
      const bool measured =
          g.result() == v1::GATE_OUTCOME_PASS || g.result() == v1::GATE_OUTCOME_FAIL;
      gates.AddRow({absl::StrCat(w.index()), GateName(g.gate()), GateOutcomeName(g.result()),
                    !IsInferenceGate(g.gate()) || measured ? GateValue(g.gate(), g.value()) : "-",
                    GateValue(g.gate(), g.threshold()), GateBasis(g), g.detail()});
    }
  }
  out << "\nGates:\n";
  if (gates.rows() == 0) {
    out << "  (none evaluated yet)\n";
  } else {
    gates.Render(out);
  }

  Table events({"TIME", "ACTOR", "KIND", "WAVE", "MESSAGE"});
  for (const v1::RolloutEvent& e : r.events()) {
    events.AddRow({FormatTimestamp(e.at()), Actor(e),
                   ShortEnumName(v1::RolloutEventKind_Name(e.kind()), 3), absl::StrCat(e.wave()),
                   e.message()});
  }
  out << "\nEvents:\n";
  if (events.rows() == 0) {
    out << "  (none)\n";
  } else {
    events.Render(out);
  }
}

void RenderRolloutList(const v1::ListRolloutsResponse& list, std::ostream& out) {
  Table table({"NAME", "MODEL", "VERSION", "STATE", "WAVE", "SELECTOR", "CREATED"});
  for (const v1::Rollout& r : list.rollouts()) {
    table.AddRow(
        {r.name(), r.model_name(), r.version(), RolloutStateName(r.state()),
         r.waves_size() == 0 ? "-" : absl::StrCat(r.current_wave(), "/", r.waves_size() - 1),
         OrDash(r.label_selector()), FormatTimestamp(r.created_at())});
  }
  table.Render(out);
}

}  // namespace edgefleet::cli
