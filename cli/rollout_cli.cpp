#include "cli/rollout_cli.h"

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
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

// Percent gates read "2.5%"; the probation count gate is a count.
std::string GateValue(v1::Gate gate, double value) {
  return gate == v1::GATE_PROBATION_FAILURE_COUNT ? absl::StrCat(value) : Percent(value);
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

  Table gates({"WAVE", "GATE", "RESULT", "VALUE", "THRESHOLD", "DEVICES", "DETAIL"});
  for (const v1::WaveStatus& w : r.waves()) {
    for (const v1::GateResult& g : w.gates()) {
      gates.AddRow({absl::StrCat(w.index()), GateName(g.gate()), GateOutcomeName(g.result()),
                    GateValue(g.gate(), g.value()), GateValue(g.gate(), g.threshold()),
                    absl::StrCat(g.devices(), " (min ", g.min_devices(), ")"), g.detail()});
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
