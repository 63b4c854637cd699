#include "server/rollout/decision.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace edgefleet::server::rollout {
namespace {

using std::chrono::seconds;

std::string WaveName(const RolloutDefinition& rollout, size_t index) {
  if (index >= rollout.plan.waves.size()) return absl::StrCat("wave ", index);
  return absl::StrCat("wave ", index, " (", DescribeSize(rollout.plan.waves[index]), ")");
}

std::string CountsText(const WaveCounts& c) {
  return absl::StrCat(c.targeted, " targeted, ", c.serving, " serving, ",
                      c.install_failed + c.refused + c.probation_failed, " failed, ", c.waiting(),
                      " in progress",
                      c.rolled_back > 0 ? absl::StrCat(", ", c.rolled_back, " rolled back") : "");
}

// The details of the gates whose result is `outcome`, joined; gates in a row with the same
// detail (the inference gates under their minimums) share it: "a, b: detail".
std::string GateDetails(const std::vector<v1::GateResult>& gates, v1::GateOutcome outcome) {
  std::vector<std::pair<std::vector<std::string>, std::string>> parts;
  for (const v1::GateResult& g : gates) {
    if (g.result() != outcome) continue;
    std::string name = v1::Gate_Name(g.gate());
    absl::string_view short_name(name);
    absl::ConsumePrefix(&short_name, "GATE_");
    std::string lower = absl::AsciiStrToLower(short_name);
    if (!parts.empty() && parts.back().second == g.detail()) {
      parts.back().first.push_back(std::move(lower));
    } else {
      parts.push_back({{std::move(lower)}, g.detail()});
    }
  }
  return absl::StrJoin(parts, "; ", [](std::string* out, const auto& part) {
    absl::StrAppend(out, absl::StrJoin(part.first, ", "), ": ", part.second);
  });
}

class DecisionBuilder {
 public:
  DecisionBuilder(const RolloutProgress& progress, Clock::TimePoint now, v1::RolloutActor actor)
      : now_(now) {
    decision_.next = progress;
    event_.mutable_at()->set_seconds(ToUnixSeconds(now));
    event_.set_actor(actor);
    event_.set_from_state(progress.state);
    event_.set_wave(static_cast<uint32_t>(progress.current_wave));
  }

  DecisionBuilder& Gates(std::vector<v1::GateResult> gates) {
    decision_.gates = std::move(gates);
    return *this;
  }
  DecisionBuilder& Operator(std::string_view name) {
    event_.set_operator_name(std::string(name));
    return *this;
  }
  RolloutProgress& next() { return decision_.next; }

  // Starts wave `index` now.
  void StartWave(size_t index) {
    decision_.next.state = v1::ROLLOUT_STATE_RUNNING;
    decision_.next.current_wave = index;
    decision_.next.wave_started_at = now_;
    decision_.next.soak_started_at.reset();
    decision_.next.promote_requested = false;
  }

  Decision Finish(Action action, v1::RolloutEventKind kind, std::string message) {
    decision_.action = action;
    event_.set_kind(kind);
    event_.set_to_state(decision_.next.state);
    event_.set_message(std::move(message));
    for (const v1::GateResult& g : decision_.gates) *event_.add_gates() = g;
    decision_.event = std::move(event_);
    return std::move(decision_);
  }

 private:
  Clock::TimePoint now_;
  Decision decision_;
  v1::RolloutEvent event_;
};

// The current wave is done (passed, or has nothing of its own): the next wave or success.
Decision Advance(const RolloutDefinition& rollout, DecisionBuilder& b, size_t wave,
                 const std::string& why) {
  if (wave + 1 >= rollout.plan.waves.size()) {
    b.next().state = v1::ROLLOUT_STATE_SUCCEEDED;
    b.next().promote_requested = false;
    return b.Finish(Action::kSucceed, v1::ROLLOUT_EVENT_KIND_SUCCEEDED,
                    absl::StrCat(why, "; it was the last wave: the rollout succeeded"));
  }
  b.StartWave(wave + 1);
  return b.Finish(Action::kPromote, v1::ROLLOUT_EVENT_KIND_PROMOTED,
                  absl::StrCat(why, "; starting ", WaveName(rollout, wave + 1)));
}

Decision DecideRunning(const RolloutDefinition& rollout, const RolloutProgress& progress,
                       const WaveObservation& seen, Clock::TimePoint now) {
  DecisionBuilder b(progress, now, v1::ROLLOUT_ACTOR_CONTROLLER);
  const size_t index = progress.current_wave;
  const std::string wave = WaveName(rollout, index);
  if (index >= rollout.plan.waves.size()) {
    return b.Finish(Action::kHold, v1::ROLLOUT_EVENT_KIND_HELD,
                    absl::StrCat("current wave ", index, " is past the rollout's ",
                                 rollout.plan.waves.size(), " waves"));
  }
  if (!progress.wave_started_at.has_value()) {
    b.StartWave(index);
    return b.Finish(
        Action::kStartWave, v1::ROLLOUT_EVENT_KIND_WAVE_STARTED,
        absl::StrCat("starting ", wave, " of ", seen.matching_devices, " matching devices: ",
                     CumulativeTarget(rollout.plan, index, seen.matching_devices),
                     " targeted in all"));
  }
  const Wave& spec = rollout.plan.waves[index];

  if (seen.superseded) {
    b.next().state = v1::ROLLOUT_STATE_ABORTED;
    b.next().promote_requested = false;
    return b.Finish(
        Action::kAbort, v1::ROLLOUT_EVENT_KIND_ABORTED,
        absl::StrCat("superseded: every device it targeted follows a newer rollout of ",
                     rollout.model_name, " and no other device matches; it stops in ", wave));
  }
  if (seen.counts.targeted == 0) {
    if (seen.matching_devices == 0) {
      return b.Finish(Action::kHold, v1::ROLLOUT_EVENT_KIND_HELD,
                      absl::StrCat(wave, " holds: no device matches the selector '",
                                   rollout.label_selector, "'"));
    }
    const uint64_t target = CumulativeTarget(rollout.plan, index, seen.matching_devices);
    if (seen.assigned_devices >= target) {
      return Advance(
          rollout, b, index,
          absl::StrCat(wave, " has no device of its own: its target of ", target, " of ",
                       seen.matching_devices, " matching devices is covered by earlier waves (",
                       seen.assigned_devices, " assigned)"));
    }
    return b.Finish(Action::kHold, v1::ROLLOUT_EVENT_KIND_HELD,
                    absl::StrCat(wave, " holds: no device assigned to it yet (target ", target,
                                 " of ", seen.matching_devices, " matching devices, ",
                                 seen.assigned_devices, " assigned)"));
  }

  std::vector<v1::GateResult> gates = WaveGates(spec.gates, seen);
  const v1::GateOutcome overall = Overall(gates);
  b.Gates(gates);
  const std::string counts = CountsText(seen.counts);

  if (overall == v1::GATE_OUTCOME_FAIL) {
    const std::string why =
        absl::StrCat(wave, " failed (", counts, "): ", GateDetails(gates, v1::GATE_OUTCOME_FAIL));
    b.next().promote_requested = false;
    switch (rollout.on_failure) {
      case v1::ROLLOUT_FAILURE_ACTION_ABORT:
        b.next().state = v1::ROLLOUT_STATE_ABORTED;
        return b.Finish(Action::kAbort, v1::ROLLOUT_EVENT_KIND_ABORTED,
                        absl::StrCat(why, "; aborting: no more devices are assigned"));
      case v1::ROLLOUT_FAILURE_ACTION_ROLLBACK:
        b.next().state = v1::ROLLOUT_STATE_ROLLED_BACK;
        return b.Finish(Action::kRollBack, v1::ROLLOUT_EVENT_KIND_ROLLED_BACK,
                        absl::StrCat(why, "; rolling back devices on ", rollout.version,
                                     " to their previous version"));
      default:
        b.next().state = v1::ROLLOUT_STATE_PAUSED;
        return b.Finish(Action::kPause, v1::ROLLOUT_EVENT_KIND_PAUSED,
                        absl::StrCat(why, "; pausing"));
    }
  }
  if (overall == v1::GATE_OUTCOME_INCONCLUSIVE) {
    return b.Finish(Action::kHold, v1::ROLLOUT_EVENT_KIND_HELD,
                    absl::StrCat(wave, " holds (", counts,
                                 "): ", GateDetails(gates, v1::GATE_OUTCOME_INCONCLUSIVE),
                                 progress.promote_requested ? "; promotion requested" : ""));
  }

  const std::string passed = absl::StrCat(wave, " passed its gates (", counts, ")");
  if (spec.soak == seconds(0)) return Advance(rollout, b, index, passed);
  if (progress.promote_requested) {
    return Advance(rollout, b, index, absl::StrCat(passed, "; an operator skipped its soak"));
  }
  if (!progress.soak_started_at.has_value()) {
    b.next().soak_started_at = now;
    return b.Finish(Action::kStartSoak, v1::ROLLOUT_EVENT_KIND_SOAK_STARTED,
                    absl::StrCat(passed, "; soaking ", spec.soak.count(), " s until ",
                                 FormatUnixTime(ToUnixSeconds(now + spec.soak))));
  }
  const Clock::TimePoint soak_end = *progress.soak_started_at + spec.soak;
  if (now >= soak_end) {
    return Advance(rollout, b, index,
                   absl::StrCat(passed, " and soaked ", spec.soak.count(), " s"));
  }
  return b.Finish(Action::kHold, v1::ROLLOUT_EVENT_KIND_HELD,
                  absl::StrCat(wave, " soaking ", spec.soak.count(), " s, until ",
                               FormatUnixTime(ToUnixSeconds(soak_end))));
}

absl::Status Impossible(const RolloutDefinition& rollout, const RolloutProgress& progress,
                        std::string_view action, std::string_view allowed) {
  return absl::FailedPreconditionError(
      absl::StrCat("rollout '", rollout.name, "' is ", StateName(progress.state), ": it cannot be ",
                   std::string(action), " (only ", std::string(allowed), ")"));
}

bool In(v1::RolloutState state, std::initializer_list<v1::RolloutState> states) {
  for (v1::RolloutState s : states) {
    if (s == state) return true;
  }
  return false;
}

}  // namespace

const char* StateName(v1::RolloutState state) {
  switch (state) {
    case v1::ROLLOUT_STATE_PENDING:
      return "PENDING";
    case v1::ROLLOUT_STATE_RUNNING:
      return "RUNNING";
    case v1::ROLLOUT_STATE_PAUSED:
      return "PAUSED";
    case v1::ROLLOUT_STATE_SUCCEEDED:
      return "SUCCEEDED";
    case v1::ROLLOUT_STATE_ABORTED:
      return "ABORTED";
    case v1::ROLLOUT_STATE_ROLLED_BACK:
      return "ROLLED_BACK";
    default:
      return "UNSPECIFIED";
  }
}

Decision Decide(const RolloutDefinition& rollout, const RolloutProgress& progress,
                const WaveObservation& observation, Clock::TimePoint now) {
  switch (progress.state) {
    case v1::ROLLOUT_STATE_PENDING: {
      DecisionBuilder b(progress, now, v1::ROLLOUT_ACTOR_CONTROLLER);
      b.StartWave(0);
      return b.Finish(Action::kStartWave, v1::ROLLOUT_EVENT_KIND_WAVE_STARTED,
                      absl::StrCat("starting ", WaveName(rollout, 0), " of ",
                                   observation.matching_devices, " matching devices: ",
                                   CumulativeTarget(rollout.plan, 0, observation.matching_devices),
                                   " targeted"));
    }
    case v1::ROLLOUT_STATE_RUNNING:
      return DecideRunning(rollout, progress, observation, now);
    default: {
      Decision none;
      none.next = progress;
      return none;
    }
  }
}

absl::StatusOr<Decision> ApplyOperatorAction(const RolloutDefinition& rollout,
                                             const RolloutProgress& progress, OperatorAction action,
                                             std::string_view operator_name,
                                             std::string_view reason, Clock::TimePoint now) {
  using S = v1::RolloutState;
  DecisionBuilder b(progress, now, v1::ROLLOUT_ACTOR_OPERATOR);
  b.Operator(operator_name);
  const std::string who = absl::StrCat(std::string(operator_name), " ");
  const std::string because =
      reason.empty() ? std::string() : absl::StrCat(": ", std::string(reason));
  const std::string wave = WaveName(rollout, progress.current_wave);
  switch (action) {
    case OperatorAction::kPause:
      if (!In(progress.state, {S::ROLLOUT_STATE_PENDING, S::ROLLOUT_STATE_RUNNING})) {
        return Impossible(rollout, progress, "paused", "PENDING or RUNNING rollouts pause");
      }
      b.next().state = S::ROLLOUT_STATE_PAUSED;
      return b.Finish(Action::kPause, v1::ROLLOUT_EVENT_KIND_PAUSED,
                      absl::StrCat(who, "paused the rollout in ", wave, because));
    case OperatorAction::kResume:
      if (progress.state != S::ROLLOUT_STATE_PAUSED) {
        return Impossible(rollout, progress, "resumed", "PAUSED rollouts resume");
      }
      b.next().state = S::ROLLOUT_STATE_RUNNING;
      return b.Finish(Action::kResume, v1::ROLLOUT_EVENT_KIND_RESUMED,
                      absl::StrCat(who, "resumed the rollout in ", wave, because));
    case OperatorAction::kPromote:
      if (progress.state != S::ROLLOUT_STATE_RUNNING || !progress.wave_started_at.has_value()) {
        return Impossible(rollout, progress, "promoted",
                          "RUNNING rollouts whose current wave has started promote");
      }
      if (progress.promote_requested) {
        return absl::FailedPreconditionError(
            absl::StrCat("rollout '", rollout.name, "': promotion of ", wave,
                         " was requested already; it promotes once its gates pass"));
      }
      b.next().promote_requested = true;
      return b.Finish(Action::kRequestPromote, v1::ROLLOUT_EVENT_KIND_PROMOTE_REQUESTED,
                      absl::StrCat(who, "asked to promote ", wave,
                                   " without the rest of its soak; it promotes once its gates "
                                   "pass",
                                   because));
    case OperatorAction::kAbort:
      if (!In(progress.state,
              {S::ROLLOUT_STATE_PENDING, S::ROLLOUT_STATE_RUNNING, S::ROLLOUT_STATE_PAUSED})) {
        return Impossible(rollout, progress, "aborted",
                          "PENDING, RUNNING or PAUSED rollouts abort");
      }
      b.next().state = S::ROLLOUT_STATE_ABORTED;
      b.next().promote_requested = false;
      return b.Finish(Action::kAbort, v1::ROLLOUT_EVENT_KIND_ABORTED,
                      absl::StrCat(who, "aborted the rollout in ", wave,
                                   ": no more devices are assigned", because));
    case OperatorAction::kRollBack:
      if (!In(progress.state, {S::ROLLOUT_STATE_RUNNING, S::ROLLOUT_STATE_PAUSED,
                               S::ROLLOUT_STATE_SUCCEEDED, S::ROLLOUT_STATE_ABORTED})) {
        return Impossible(rollout, progress, "rolled back",
                          "RUNNING, PAUSED, SUCCEEDED or ABORTED rollouts roll back");
      }
      b.next().state = S::ROLLOUT_STATE_ROLLED_BACK;
      b.next().promote_requested = false;
      return b.Finish(Action::kRollBack, v1::ROLLOUT_EVENT_KIND_ROLLED_BACK,
                      absl::StrCat(who, "rolled the rollout back in ", wave, ": devices on ",
                                   rollout.version, " go back to their previous version", because));
  }
  return absl::InvalidArgumentError("unknown operator action");
}

v1::WaveState WaveStateOf(const RolloutProgress& progress, size_t index,
                          v1::GateOutcome last_outcome) {
  if (index < progress.current_wave) return v1::WAVE_STATE_PASSED;
  if (index > progress.current_wave) return v1::WAVE_STATE_PENDING;
  switch (progress.state) {
    case v1::ROLLOUT_STATE_PENDING:
      return v1::WAVE_STATE_PENDING;
    case v1::ROLLOUT_STATE_RUNNING:
      if (!progress.wave_started_at.has_value()) return v1::WAVE_STATE_PENDING;
      return progress.soak_started_at.has_value() ? v1::WAVE_STATE_SOAKING : v1::WAVE_STATE_RUNNING;
    case v1::ROLLOUT_STATE_SUCCEEDED:
      return v1::WAVE_STATE_PASSED;
    default:
      return last_outcome == v1::GATE_OUTCOME_FAIL ? v1::WAVE_STATE_FAILED : v1::WAVE_STATE_STOPPED;
  }
}

std::vector<v1::GateResult> WaveGates(const GateThresholds& gates, const WaveObservation& seen) {
  std::vector<v1::GateResult> results = EvaluateGates(gates, seen.counts);
  if (gates.inference.enabled) {
    for (v1::GateResult& g : EvaluateInferenceGates(gates.inference, seen.inference)) {
      results.push_back(std::move(g));
    }
  }
  return results;
}

v1::WaveStatus DescribeWave(const RolloutDefinition& rollout, const RolloutProgress& progress,
                            size_t index, const WaveCounts& counts,
                            const std::vector<v1::GateResult>& inference_gates) {
  v1::WaveStatus status;
  status.set_index(static_cast<uint32_t>(index));
  if (index < rollout.plan.waves.size())
    *status.mutable_spec() = ToProto(rollout.plan.waves[index]);
  SetCounts(counts, &status);
  const bool started = index < progress.current_wave ||
                       (index == progress.current_wave && progress.wave_started_at.has_value());
  v1::GateOutcome outcome = v1::GATE_OUTCOME_UNSPECIFIED;
  if (started && index < rollout.plan.waves.size()) {
    auto gates = EvaluateGates(rollout.plan.waves[index].gates, counts);
    gates.insert(gates.end(), inference_gates.begin(), inference_gates.end());
    outcome = Overall(gates);
    for (const v1::GateResult& g : gates) *status.add_gates() = g;
  }
  status.set_state(WaveStateOf(progress, index, outcome));
  if (index == progress.current_wave) {
    if (progress.wave_started_at) {
      status.mutable_started_at()->set_seconds(ToUnixSeconds(*progress.wave_started_at));
    }
    if (progress.soak_started_at) {
      status.mutable_soak_started_at()->set_seconds(ToUnixSeconds(*progress.soak_started_at));
    }
  }
  return status;
}

void FillWaveStartTimes(v1::Rollout& rollout) {
  for (const v1::RolloutEvent& e : rollout.events()) {
    int started = -1;
    if (e.kind() == v1::ROLLOUT_EVENT_KIND_WAVE_STARTED) started = static_cast<int>(e.wave());
    if (e.kind() == v1::ROLLOUT_EVENT_KIND_PROMOTED) started = static_cast<int>(e.wave()) + 1;
    if (started < 0 || started >= rollout.waves_size()) continue;
    v1::WaveStatus* wave = rollout.mutable_waves(started);
    if (!wave->has_started_at()) *wave->mutable_started_at() = e.at();
  }
}

bool SameHold(const v1::RolloutEvent& a, const v1::RolloutEvent& b) {
  if (a.kind() != v1::ROLLOUT_EVENT_KIND_HELD || b.kind() != v1::ROLLOUT_EVENT_KIND_HELD ||
      a.wave() != b.wave() || a.gates_size() != b.gates_size()) {
    return false;
  }
  for (int i = 0; i < a.gates_size(); ++i) {
    if (a.gates(i).gate() != b.gates(i).gate() || a.gates(i).result() != b.gates(i).result()) {
      return false;
    }
  }
  // Without gates (no device yet) the message says it all; with gates all passing (soaking) the
  // message names the soak's end, which does not move with the clock.
  return a.gates_size() > 0 || a.message() == b.message();
}

}  // namespace edgefleet::server::rollout
