#include "server/rollout/controller.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/core/logging.h"
#include "server/rollout/membership.h"

namespace edgefleet::server::rollout {
namespace {

google::protobuf::Timestamp TimestampOf(Clock::TimePoint t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(ToUnixSeconds(t));
  return ts;
}

std::string JsonOf(const google::protobuf::Message& message) {
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(message, &json).ok()) return "{}";
  return json;
}

std::vector<std::chrono::seconds> ServingTimeouts(const RolloutDefinition& definition) {
  std::vector<std::chrono::seconds> timeouts;
  for (const Wave& wave : definition.plan.waves) timeouts.push_back(wave.gates.serving_timeout);
  return timeouts;
}

uint64_t AssignedCount(const std::vector<MatchingDevice>& devices) {
  uint64_t n = 0;
  for (const MatchingDevice& d : devices) n += d.assigned ? 1 : 0;
  return n;
}

// Marks `picked` assigned in `devices`.
void MarkAssigned(const std::vector<std::string>& picked, std::vector<MatchingDevice>* devices) {
  for (MatchingDevice& d : *devices) {
    for (const std::string& id : picked) {
      if (d.device_id == id) d.assigned = true;
    }
  }
}

// Whether the current wave of a rollout in `progress` has its inference gates evaluated now.
bool InferenceGatesLive(const RolloutDefinition& definition, const RolloutProgress& progress) {
  return progress.state == v1::ROLLOUT_STATE_RUNNING && progress.wave_started_at.has_value() &&
         progress.current_wave < definition.plan.waves.size() &&
         definition.plan.waves[progress.current_wave].gates.inference.enabled;
}

// The inference gates of the last decision about wave `index` that recorded some.
std::vector<v1::GateResult> RecordedInferenceGates(const std::vector<v1::RolloutEvent>& events,
                                                   size_t index) {
  for (auto e = events.rbegin(); e != events.rend(); ++e) {
    if (e->wave() != index) continue;
    std::vector<v1::GateResult> gates;
    for (const v1::GateResult& g : e->gates()) {
      if (IsInferenceGate(g.gate())) gates.push_back(g);
    }
    if (!gates.empty()) return gates;
  }
  return {};
}

}  // namespace

const char* ActionName(OperatorAction action) {
  switch (action) {
    case OperatorAction::kPause:
      return "pause";
    case OperatorAction::kResume:
      return "resume";
    case OperatorAction::kPromote:
      return "promote";
    case OperatorAction::kAbort:
      return "abort";
    case OperatorAction::kRollBack:
      return "rollback";
  }
  return "unknown";
}

RolloutController::RolloutController(Transactor& db, RolloutStore& rollouts, AuditStore& audit,
                                     InferenceSampleSource& samples, const Clock& clock,
                                     ServerMetrics* metrics, ControllerOptions options)
    : db_(db),
      rollouts_(rollouts),
      audit_(audit),
      samples_(samples),
      clock_(clock),
      metrics_(metrics),
      options_(options) {}

RolloutController::~RolloutController() { Stop(); }

absl::StatusOr<v1::Rollout> RolloutController::Describe(Tx& tx, const StoredRollout& stored,
                                                        bool with_events) {
  auto definition = DefinitionOf(stored.rollout);
  if (!definition.ok()) return definition.status();
  auto counts = rollouts_.CountWaves(tx, stored.deployment_id, ServingTimeouts(*definition),
                                     ToUnixSeconds(clock_.Now()));
  if (!counts.ok()) return counts.status();
  // Inference gates: evaluated now for a running wave, as last recorded for the others.
  auto events = rollouts_.Events(tx, stored.rollout.name());
  if (!events.ok()) return events.status();
  std::vector<v1::GateResult> live;
  const bool observe = InferenceGatesLive(*definition, stored.progress);
  if (observe) {
    const int64_t now_unix = ToUnixSeconds(clock_.Now());
    auto matching = rollouts_.MatchingDevices(tx, stored.deployment_id);
    if (!matching.ok()) return matching.status();
    auto seen = ObserveInference(tx, *definition, stored, *matching, now_unix);
    if (!seen.ok()) return seen.status();
    live = EvaluateInferenceGates(
        definition->plan.waves[stored.progress.current_wave].gates.inference, *seen);
  }
  v1::Rollout out = stored.rollout;
  out.clear_events();
  for (size_t i = 0; i < definition->plan.waves.size(); ++i) {
    *out.mutable_waves(static_cast<int>(i)) = DescribeWave(
        *definition, stored.progress, i, (*counts)[i],
        observe && i == stored.progress.current_wave ? live : RecordedInferenceGates(*events, i));
  }
  if (with_events) {
    for (v1::RolloutEvent& e : *events) *out.add_events() = std::move(e);
    FillWaveStartTimes(out);
  }
  return out;
}

absl::StatusOr<InferenceComparison> RolloutController::ObserveInference(
    Tx& tx, const RolloutDefinition& definition, const StoredRollout& stored,
    const std::vector<MatchingDevice>& matching, int64_t now_unix) {
  InferenceComparison seen;
  const RolloutProgress& progress = stored.progress;
  if (!progress.wave_started_at.has_value()) return seen;
  const int64_t started = ToUnixSeconds(*progress.wave_started_at);
  auto canaries =
      samples_.WaveCanaries(tx, stored.deployment_id, static_cast<uint32_t>(progress.current_wave));
  if (!canaries.ok()) return canaries.status();
  if (canaries->empty()) return seen;  // no canary serves yet: nothing to compare
  std::vector<std::string> canary_ids;
  std::vector<std::string> previous;
  for (const InferenceSampleSource::Canary& c : *canaries) {
    canary_ids.push_back(c.device_id);
    previous.push_back(c.previous_version);
  }
  std::optional<std::string> previous_version = PreviousVersionOf(previous);
  if (!previous_version.has_value()) {
    seen.control = v1::INFERENCE_CONTROL_NONE;
    return seen;
  }
  seen.control_version = *previous_version;
  // Windows that start within the current second are included.
  const int64_t until = now_unix + 1;
  auto canary =
      samples_.Sample(tx, definition.model_name, definition.version, canary_ids, started, until);
  if (!canary.ok()) return canary.status();
  seen.canary = *std::move(canary);
  const int64_t from = seen.canary.first_window_start_unix.value_or(started);

  std::vector<std::string> control_ids;
  for (const MatchingDevice& d : matching) {
    if (!d.assigned) control_ids.push_back(d.device_id);
  }
  absl::StatusOr<InferenceSide> control;
  if (!control_ids.empty()) {
    seen.control = v1::INFERENCE_CONTROL_LIVE;
    control =
        samples_.Sample(tx, definition.model_name, *previous_version, control_ids, from, until);
  } else {
    // No device left outside the rollout: the canaries themselves, as long before the wave.
    seen.control = v1::INFERENCE_CONTROL_BEFORE_WAVE;
    const int64_t length = std::max<int64_t>(0, until - from);
    control = samples_.Sample(tx, definition.model_name, *previous_version, canary_ids,
                              started - length, started);
  }
  if (!control.ok()) return control.status();
  seen.control_side = *std::move(control);
  return seen;
}

absl::StatusOr<v1::Rollout> RolloutController::Create(const v1::CreateRolloutRequest& request,
                                                      const std::string& actor) {
  auto definition = ValidateCreateRollout(request);
  if (!definition.ok()) return definition.status();
  v1::Rollout rollout = NewRollout(*definition);
  rollout.set_description(request.description());
  const Clock::TimePoint now = clock_.Now();
  v1::RolloutEvent created;
  *created.mutable_at() = TimestampOf(now);
  created.set_kind(v1::ROLLOUT_EVENT_KIND_CREATED);
  created.set_actor(v1::ROLLOUT_ACTOR_OPERATOR);
  created.set_operator_name(actor);
  created.set_to_state(v1::ROLLOUT_STATE_PENDING);
  created.set_message(absl::StrCat("created: model ", definition->model_name, " version ",
                                   definition->version, ", selector '", definition->label_selector,
                                   "', ", definition->plan.waves.size(), " waves"));
  // Its first wave starts now, not at the loop's next tick.
  return WakeLoopIfOk(db_.Transact("create rollout", [&](Tx& tx) -> absl::StatusOr<v1::Rollout> {
    auto stored = rollouts_.Insert(tx, rollout, actor, ToUnixSeconds(now));
    if (!stored.ok()) return stored.status();
    if (auto s = rollouts_.AddEvent(tx, rollout.name(), created); !s.ok()) return s;
    if (auto s = audit_.Record(tx, actor, "rollout.create", JsonOf(request)); !s.ok()) return s;
    return Describe(tx, *stored, true);
  }));
}

absl::StatusOr<v1::Rollout> RolloutController::Get(const std::string& name) {
  return db_.Transact("get rollout", [&](Tx& tx) -> absl::StatusOr<v1::Rollout> {
    auto stored = rollouts_.Find(tx, name);
    if (!stored.ok()) return stored.status();
    return Describe(tx, *stored, true);
  });
}

absl::StatusOr<Page<v1::Rollout>> RolloutController::List(const PageRequest& page) {
  return db_.Transact("list rollouts", [&](Tx& tx) -> absl::StatusOr<Page<v1::Rollout>> {
    auto stored = rollouts_.ListPage(tx, page);
    if (!stored.ok()) return stored.status();
    Page<v1::Rollout> out;
    out.next_after = stored->next_after;
    for (const StoredRollout& r : stored->items) {
      auto described = Describe(tx, r, false);
      if (!described.ok()) return described.status();
      out.items.push_back(*std::move(described));
    }
    return out;
  });
}

absl::StatusOr<v1::Rollout> RolloutController::Act(const std::string& name, OperatorAction action,
                                                   const std::string& reason,
                                                   const std::string& actor) {
  // A resumed or promoted rollout assigns its wave in the next evaluation: make that now.
  return WakeLoopIfOk(
      db_.Transact("rollout operator action", [&](Tx& tx) -> absl::StatusOr<v1::Rollout> {
        // Waits for the lease: a controller evaluation in progress finishes first, and this action
        // then applies to the state it left.
        auto locked = rollouts_.Lock(tx, name, /*skip_locked=*/false);
        if (!locked.ok()) return locked.status();
        StoredRollout& stored = **locked;
        auto definition = DefinitionOf(stored.rollout);
        if (!definition.ok()) return definition.status();
        const Clock::TimePoint now = clock_.Now();
        auto decision =
            ApplyOperatorAction(*definition, stored.progress, action, actor, reason, now);
        if (!decision.ok()) return decision.status();
        if (auto s = rollouts_.SaveProgress(tx, name, decision->next,
                                            stored.rollout.matching_devices(), ToUnixSeconds(now));
            !s.ok()) {
          return s;
        }
        if (decision->event.has_value()) {
          if (auto s = rollouts_.AddEvent(tx, name, *decision->event); !s.ok()) return s;
        }
        if (decision->action == Action::kRollBack) {
          auto rolled = rollouts_.RollBack(tx, stored.deployment_id, ToUnixSeconds(now));
          if (!rolled.ok()) return rolled.status();
        }
        if (auto s = audit_.Record(
                tx, actor, absl::StrCat("rollout.", ActionName(action)),
                decision->event.has_value() ? JsonOf(*decision->event) : std::string("{}"));
            !s.ok()) {
          return s;
        }
        auto after = rollouts_.Find(tx, name);
        if (!after.ok()) return after.status();
        return Describe(tx, *after, true);
      }));
}

absl::Status RolloutController::Evaluate(const std::string& name) {
  return EvaluateUnderLease(name).status();
}

absl::StatusOr<bool> RolloutController::EvaluateUnderLease(const std::string& name) {
  std::vector<v1::GateResult> evaluated;
  bool leased = false;
  absl::Status status = db_.Transact("evaluate rollout", [&](Tx& tx) -> absl::Status {
    evaluated.clear();
    auto locked = rollouts_.Lock(tx, name, /*skip_locked=*/true);
    if (!locked.ok()) return locked.status();
    leased = locked->has_value();
    if (!leased) return absl::OkStatus();  // another replica holds the lease
    StoredRollout& stored = **locked;
    const v1::RolloutState state = stored.progress.state;
    if (state != v1::ROLLOUT_STATE_PENDING && state != v1::ROLLOUT_STATE_RUNNING &&
        state != v1::ROLLOUT_STATE_SUCCEEDED) {
      return absl::OkStatus();
    }
    auto definition = DefinitionOf(stored.rollout);
    if (!definition.ok()) return definition.status();
    const Clock::TimePoint now = clock_.Now();
    const int64_t now_unix = ToUnixSeconds(now);
    const size_t waves = definition->plan.waves.size();
    auto matching = rollouts_.MatchingDevices(tx, stored.deployment_id);
    if (!matching.ok()) return matching.status();

    // Devices that started matching after their wave began join it (its share of them).
    const RolloutProgress& progress = stored.progress;
    std::optional<size_t> late_wave = WaveForLateDevice(state, progress.current_wave, waves);
    if (late_wave.has_value() &&
        (state == v1::ROLLOUT_STATE_SUCCEEDED || progress.wave_started_at.has_value())) {
      const uint64_t target = CumulativeTarget(definition->plan, *late_wave, matching->size());
      std::vector<std::string> picked = PickNewMembers(name, *matching, target);
      if (auto s = rollouts_.Assign(tx, stored.deployment_id, static_cast<uint32_t>(*late_wave),
                                    picked, now_unix);
          !s.ok()) {
        return s;
      }
      MarkAssigned(picked, &*matching);
    }
    if (state == v1::ROLLOUT_STATE_SUCCEEDED) {
      if (matching->size() != stored.rollout.matching_devices()) {
        return rollouts_.SaveProgress(tx, name, progress, matching->size(), now_unix);
      }
      return absl::OkStatus();
    }

    auto counts =
        rollouts_.CountWaves(tx, stored.deployment_id, ServingTimeouts(*definition), now_unix);
    if (!counts.ok()) return counts.status();
    WaveObservation observation;
    observation.counts = (*counts)[std::min(progress.current_wave, waves - 1)];
    observation.matching_devices = matching->size();
    observation.assigned_devices = AssignedCount(*matching);
    // MatchingDevices leaves out devices a newer rollout of the model claimed, and CountWaves
    // their superseded targets: none left of either after a wave started means superseded.
    uint64_t live_targets = 0;
    for (const WaveCounts& c : *counts) live_targets += c.targeted;
    if (matching->empty() && live_targets == 0) {
      auto had_targets = rollouts_.HasTargets(tx, stored.deployment_id);
      if (!had_targets.ok()) return had_targets.status();
      observation.superseded = *had_targets;
    }
    if (InferenceGatesLive(*definition, progress) && observation.counts.targeted > 0) {
      auto seen = ObserveInference(tx, *definition, stored, *matching, now_unix);
      if (!seen.ok()) return seen.status();
      observation.inference = *std::move(seen);
    }
    Decision decision = Decide(*definition, progress, observation, now);
    evaluated = decision.gates;
    if (decision.action == Action::kNone) return absl::OkStatus();

    if (decision.next != progress || matching->size() != stored.rollout.matching_devices()) {
      if (auto s = rollouts_.SaveProgress(tx, name, decision.next, matching->size(), now_unix);
          !s.ok()) {
        return s;
      }
    }
    if (decision.event.has_value()) {
      bool record = true;
      if (decision.action == Action::kHold) {
        auto last = rollouts_.LastEvent(tx, name);
        if (!last.ok()) return last.status();
        record = !last->has_value() || !SameHold(**last, *decision.event);
      }
      if (record) {
        if (auto s = rollouts_.AddEvent(tx, name, *decision.event); !s.ok()) return s;
      }
    }
    switch (decision.action) {
      case Action::kStartWave:
      case Action::kPromote: {
        const uint64_t target =
            CumulativeTarget(definition->plan, decision.next.current_wave, matching->size());
        return rollouts_.Assign(tx, stored.deployment_id,
                                static_cast<uint32_t>(decision.next.current_wave),
                                PickNewMembers(name, *matching, target), now_unix);
      }
      case Action::kRollBack: {
        auto rolled = rollouts_.RollBack(tx, stored.deployment_id, now_unix);
        return rolled.status();
      }
      default:
        return absl::OkStatus();
    }
  });
  if (status.ok() && metrics_ != nullptr) {
    for (const v1::GateResult& gate : evaluated) {
      metrics_->rollout_gate_evaluations
          .Add({{"gate", v1::Gate_Name(gate.gate())},
                {"result", v1::GateOutcome_Name(gate.result())}})
          .Increment();
    }
  }
  if (!status.ok()) return status;
  return leased;
}

absl::Status RolloutController::EvaluateAll() {
  auto work = db_.Transact("list rollouts to evaluate", [&](Tx& tx) {
    return rollouts_.NamesToEvaluate(tx, options_.max_placements_per_pass);
  });
  if (!work.ok()) return work.status();
  absl::Status first;
  bool all_evaluated = true;
  for (const std::string& name : work->names) {
    absl::StatusOr<bool> leased = EvaluateUnderLease(name);
    if (!leased.ok()) {
      Logger("rollout")->warn("evaluation failed rollout={} error={}", name,
                              leased.status().ToString());
      if (first.ok()) first = leased.status();
    }
    all_evaluated = all_evaluated && leased.value_or(false);
  }
  if (all_evaluated && !work->placements.empty()) {
    absl::Status forgot = db_.Transact("forget device placements", [&](Tx& tx) {
      return rollouts_.ForgetPlacements(tx, work->placements);
    });
    if (!forgot.ok() && first.ok()) first = forgot;
  }
  return first;
}

void RolloutController::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void RolloutController::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<v1::Rollout> RolloutController::WakeLoopIfOk(absl::StatusOr<v1::Rollout> done) {
  if (done.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      wake_requested_ = true;
    }
    wake_.notify_all();
  }
  return done;
}

void RolloutController::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    wake_requested_ = false;
    lock.unlock();
    (void)EvaluateAll();  // failures are logged; the next round tries again
    lock.lock();
    wake_.wait_for(lock, options_.interval, [this] { return stopping_ || wake_requested_; });
  }
}

}  // namespace edgefleet::server::rollout
