// The rollout's decisions: what the controller does next given the rollout's progress and its
// current wave's counts at `now`, and what an operator action does. Pure and deterministic:
// deciding twice on the same inputs gives the same decision, so a controller that crashes
// between deciding and storing decides the same again. Every decision but kNone carries a
// RolloutEvent with its numbers.
//
// The controller's loop, for one RUNNING or PENDING rollout, in one transaction:
//   decision = Decide(definition, progress, observation, now)
//   store decision.next (and decision.event, see below), then act on decision.action:
//     kStartWave, kPromote: assign PickNewMembers(key, matching,
//                               CumulativeTarget(plan, next.current_wave, matching)) to
//                           next.current_wave;
//     kAbort:     assign nothing more;
//     kRollBack:  assign nothing more; send the devices on the new version back to the version
//                 they ran before (under a new metadata version).
// A hold is decided at every evaluation; record its event only when !SameHold(it, the last
// event recorded), or the record fills with the same line every 5 s.
//
// Operator promote skips the rest of the current wave's soak but never a failing or
// inconclusive gate: the wave promotes at the first evaluation where all its gates pass.
// Resuming a rollout paused by a failed gate evaluates the gates again: if they still fail, the
// rollout pauses again (abort or roll back instead).
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "edgefleet/v1/rollout.pb.h"
#include "server/rollout/gates.h"
#include "server/rollout/inference_gates.h"
#include "server/rollout/wave_plan.h"

namespace edgefleet::server::rollout {

// What the controller stores about where a rollout is.
struct RolloutProgress {
  v1::RolloutState state = v1::ROLLOUT_STATE_PENDING;
  size_t current_wave = 0;
  // When the current wave's devices were targeted; unset before it started.
  std::optional<Clock::TimePoint> wave_started_at;
  // When the current wave's gates first all passed: its soak runs from here.
  std::optional<Clock::TimePoint> soak_started_at;
  // An operator asked to skip the rest of the current wave's soak.
  bool promote_requested = false;

  bool operator==(const RolloutProgress&) const = default;
};

// What the controller observed of the current wave.
struct WaveObservation {
  WaveCounts counts;              // the current wave's own devices
  uint64_t matching_devices = 0;  // devices the selector matches now
  uint64_t assigned_devices = 0;  // devices assigned to any wave of the rollout
  // Every device the rollout targeted now follows a newer rollout of the same model, and no
  // other device matches: nothing is left for it to do.
  bool superseded = false;
  // The current wave's canaries against control (inference_gates.h), read only when its
  // inference gates are on; left empty, the inference gates are inconclusive.
  InferenceComparison inference = {};
};

enum class Action {
  kNone,            // PAUSED or finished: nothing to decide, no event
  kHold,            // wait (gates inconclusive, soaking, no device yet)
  kStartWave,       // target the devices of next.current_wave (first wave, or after a resume)
  kStartSoak,       // every gate passes: the soak starts (next.soak_started_at)
  kRequestPromote,  // operator: skip the rest of the soak
  kPromote,         // the current wave passed: target the devices of next.current_wave
  kSucceed,         // the last wave passed
  kPause,
  kResume,
  kAbort,     // stop assigning devices
  kRollBack,  // stop assigning; send devices on the new version back to their previous version
};

struct Decision {
  Action action = Action::kNone;
  RolloutProgress next;               // the progress to store
  std::vector<v1::GateResult> gates;  // the current wave's gates, when evaluated
  std::optional<v1::RolloutEvent> event;
};

// The controller's decision for a rollout at `now`.
//  - PENDING: start wave 0.
//  - RUNNING, current wave not started (resumed before its start): start it.
//  - RUNNING and superseded (see WaveObservation): ABORTED, saying so, rather than hold forever.
//  - RUNNING, the wave has no device: hold while no device matches or it has none assigned yet;
//    skip to the next wave (or succeed) when earlier waves already cover its target.
//  - RUNNING: the gates are the install gates (EvaluateGates) followed by the inference gates
//    (EvaluateInferenceGates on observation.inference) when the wave's inference gates are on.
//  - RUNNING, a gate FAILs: the rollout's on_failure (pause, abort or roll back).
//  - RUNNING, a gate INCONCLUSIVE: hold.
//  - RUNNING, every gate PASSes: start the soak; once the soak has elapsed (or at once for no
//    soak, or when an operator asked to promote) promote to the next wave, or succeed after the
//    last.
//  - PAUSED, SUCCEEDED, ABORTED, ROLLED_BACK: kNone.
Decision Decide(const RolloutDefinition& rollout, const RolloutProgress& progress,
                const WaveObservation& observation, Clock::TimePoint now);

enum class OperatorAction { kPause, kResume, kPromote, kAbort, kRollBack };

// What an operator's action does. FailedPrecondition naming the rollout, its state and what is
// possible when the action is impossible:
//   pause:    PENDING or RUNNING -> PAUSED
//   resume:   PAUSED -> RUNNING
//   promote:  RUNNING with its current wave started, once per wave (sets promote_requested)
//   abort:    PENDING, RUNNING or PAUSED -> ABORTED
//   rollback: RUNNING, PAUSED, SUCCEEDED or ABORTED -> ROLLED_BACK
// `operator_name` and `reason` go into the event.
absl::StatusOr<Decision> ApplyOperatorAction(const RolloutDefinition& rollout,
                                             const RolloutProgress& progress, OperatorAction action,
                                             std::string_view operator_name,
                                             std::string_view reason, Clock::TimePoint now);

// A wave's state for status answers, from the progress and the wave's last gate outcome.
v1::WaveState WaveStateOf(const RolloutProgress& progress, size_t index,
                          v1::GateOutcome last_outcome);

// True when `a` and `b` are holds for the same reason: the same wave with the same gate outcomes
// (the counts in their messages may differ), or the same message when they carry no gates.
bool SameHold(const v1::RolloutEvent& a, const v1::RolloutEvent& b);

// The current wave's gates as Decide evaluates them: the install gates on `seen.counts`, then,
// when the wave's inference gates are on, the inference gates on `seen.inference`.
std::vector<v1::GateResult> WaveGates(const GateThresholds& gates, const WaveObservation& seen);

// A wave's status for GetRollout: its normalised spec, its state, its counts, and (once it has
// started) its gates evaluated on `counts` followed by `inference_gates` (the caller's: evaluated
// now for the current wave, or as last recorded), with the current wave's start and soak times.
v1::WaveStatus DescribeWave(const RolloutDefinition& rollout, const RolloutProgress& progress,
                            size_t index, const WaveCounts& counts,
                            const std::vector<v1::GateResult>& inference_gates = {});

// Fills the start time of every wave that has none from the decisions in `rollout.events()`: a
// WAVE_STARTED event starts its wave, a PROMOTED one the next (the stored progress holds only
// the current wave's start).
void FillWaveStartTimes(v1::Rollout& rollout);

// "PAUSED": a state's name without the enum prefix, as messages and the CLI show it.
const char* StateName(v1::RolloutState state);

}  // namespace edgefleet::server::rollout
