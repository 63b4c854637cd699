// The controller's decisions and the operator's transitions, table-tested with explicit
// timestamps: hold, soak, promote, succeed, the failure actions, and FailedPrecondition for
// impossible operator actions. Deciding twice on the same inputs gives the same decision.
#include "server/rollout/decision.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "common/telemetry/telemetry_codec.h"

namespace edgefleet::server::rollout {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;
using S = v1::RolloutState;

const Clock::TimePoint kT0 = FromUnixSeconds(1'800'000'000);

void AddWaves(std::string_view text, v1::CreateRolloutRequest* request) {
  const auto specs = ParseWaveSizes(text);
  ASSERT_TRUE(specs.ok()) << specs.status();
  for (const v1::WaveSpec& w : *specs) *request->add_waves() = w;
}

RolloutDefinition Definition(
    std::string_view waves = "10%,50%,100%",
    v1::RolloutFailureAction on_failure = v1::ROLLOUT_FAILURE_ACTION_PAUSE) {
  v1::CreateRolloutRequest request;
  request.set_name("r");
  request.set_model_name("detector");
  request.set_version("7");
  request.set_on_failure(on_failure);
  request.mutable_gates()->set_min_finished_devices(3);
  request.mutable_gates()->set_inference_gates(false);  // InferenceGates* tests switch them on
  AddWaves(waves, &request);
  auto def = ValidateCreateRollout(request);
  EXPECT_TRUE(def.ok()) << def.status();
  return *def;
}

RolloutProgress Running(size_t wave, Clock::TimePoint started,
                        std::optional<Clock::TimePoint> soak = std::nullopt, bool promote = false) {
  return {S::ROLLOUT_STATE_RUNNING, wave, started, soak, promote};
}

// 10 devices targeted in the current wave, of 100 matching, 10 assigned in all.
WaveObservation Seen(WaveCounts counts, uint64_t matching = 100, uint64_t assigned = 10) {
  return {counts, matching, assigned};
}
const WaveCounts kAllServing{10, 10, 0, 0, 0, 0};
const WaveCounts kHalfReported{10, 5, 0, 0, 0, 0};
const WaveCounts kInstallsFail{10, 7, 3, 0, 0, 0};

struct Row {
  const char* name;
  RolloutDefinition def;
  RolloutProgress progress;
  WaveObservation seen;
  Clock::TimePoint now;
  Action action;
  RolloutProgress next;
  v1::RolloutEventKind kind;  // UNSPECIFIED: no event
  const char* message_has;
};

std::vector<Row> Rows() {
  const auto def = Definition();
  const Clock::TimePoint t1 = kT0 + minutes(10);
  const Clock::TimePoint soak_end = t1 + hours(1);
  auto no_soak = Definition("10%,100%");
  no_soak.plan.waves[0].soak = seconds(0);
  no_soak.plan.waves[1].soak = seconds(0);
  return {
      {"pending starts wave 0",
       def,
       {},
       Seen({}, 100, 0),
       kT0,
       Action::kStartWave,
       Running(0, kT0),
       v1::ROLLOUT_EVENT_KIND_WAVE_STARTED,
       "starting wave 0 (10%) of 100 matching devices: 10 targeted"},
      {"resumed before its wave started",
       def,
       {S::ROLLOUT_STATE_RUNNING, 1, {}, {}, false},
       Seen({}),
       t1,
       Action::kStartWave,
       Running(1, t1),
       v1::ROLLOUT_EVENT_KIND_WAVE_STARTED,
       "starting wave 1 (50%)"},
      {"too few reported: hold", def, Running(0, kT0), Seen(kHalfReported), t1, Action::kHold,
       Running(0, kT0), v1::ROLLOUT_EVENT_KIND_HELD,
       "wave 0 (10%) holds (10 targeted, 5 serving, 0 failed, 5 in progress): timeouts: 5 of 10 "
       "devices still within their 3600 s to reach serving"},
      {"gates pass: soak starts", def, Running(0, kT0), Seen(kAllServing), t1, Action::kStartSoak,
       Running(0, kT0, t1), v1::ROLLOUT_EVENT_KIND_SOAK_STARTED,
       "soaking 3600 s until 2027-01-15T09:10:00Z"},
      {"soaking: hold", def, Running(0, kT0, t1), Seen(kAllServing), soak_end - seconds(1),
       Action::kHold, Running(0, kT0, t1), v1::ROLLOUT_EVENT_KIND_HELD,
       "wave 0 (10%) soaking 3600 s, until 2027-01-15T09:10:00Z"},
      {"soak over exactly: promote", def, Running(0, kT0, t1), Seen(kAllServing), soak_end,
       Action::kPromote, Running(1, soak_end), v1::ROLLOUT_EVENT_KIND_PROMOTED,
       "wave 0 (10%) passed its gates (10 targeted, 10 serving, 0 failed, 0 in progress) and "
       "soaked 3600 s; starting wave 1 (50%)"},
      {"last wave soaked: succeed",
       def,
       Running(2, kT0, t1),
       Seen(kAllServing),
       soak_end,
       Action::kSucceed,
       {S::ROLLOUT_STATE_SUCCEEDED, 2, kT0, t1, false},
       v1::ROLLOUT_EVENT_KIND_SUCCEEDED,
       "it was the last wave: the rollout succeeded"},
      {"operator promote skips the soak", def, Running(0, kT0, t1, true), Seen(kAllServing),
       t1 + minutes(1), Action::kPromote, Running(1, t1 + minutes(1)),
       v1::ROLLOUT_EVENT_KIND_PROMOTED, "an operator skipped its soak"},
      {"operator promote before the soak started", def, Running(0, kT0, {}, true),
       Seen(kAllServing), t1, Action::kPromote, Running(1, t1), v1::ROLLOUT_EVENT_KIND_PROMOTED,
       "an operator skipped its soak"},
      {"operator promote does not skip inconclusive gates", def, Running(0, kT0, {}, true),
       Seen(kHalfReported), t1, Action::kHold, Running(0, kT0, {}, true),
       v1::ROLLOUT_EVENT_KIND_HELD, "; promotion requested"},
      {"operator promote does not skip a failing gate",
       def,
       Running(0, kT0, {}, true),
       Seen(kInstallsFail),
       t1,
       Action::kPause,
       {S::ROLLOUT_STATE_PAUSED, 0, kT0, {}, false},
       v1::ROLLOUT_EVENT_KIND_PAUSED,
       "install_failures"},
      {"gate fails: pause",
       def,
       Running(0, kT0),
       Seen(kInstallsFail),
       t1,
       Action::kPause,
       {S::ROLLOUT_STATE_PAUSED, 0, kT0, {}, false},
       v1::ROLLOUT_EVENT_KIND_PAUSED,
       "wave 0 (10%) failed (10 targeted, 7 serving, 3 failed, 0 in progress): "
       "install_failures: 3 of 10 finished devices failed or refused the install: 30.00% > "
       "5.00%; pausing"},
      {"gate fails while soaking: abort",
       Definition("10%,100%", v1::ROLLOUT_FAILURE_ACTION_ABORT),
       Running(0, kT0, t1),
       Seen(kInstallsFail),
       t1 + minutes(5),
       Action::kAbort,
       {S::ROLLOUT_STATE_ABORTED, 0, kT0, t1, false},
       v1::ROLLOUT_EVENT_KIND_ABORTED,
       "; aborting: no more devices are assigned"},
      {"probation fails: roll back",
       Definition("10%,100%", v1::ROLLOUT_FAILURE_ACTION_ROLLBACK),
       Running(0, kT0),
       Seen({10, 8, 0, 0, 2, 0}),
       t1,
       Action::kRollBack,
       {S::ROLLOUT_STATE_ROLLED_BACK, 0, kT0, {}, false},
       v1::ROLLOUT_EVENT_KIND_ROLLED_BACK,
       "probation_failures: 2 of 10 finished devices failed probation: 20.00% > 5.00%; rolling "
       "back devices on 7 to their previous version"},
      {"nothing matches: hold", def, Running(0, kT0), Seen({}, 0, 0), t1, Action::kHold,
       Running(0, kT0), v1::ROLLOUT_EVENT_KIND_HELD,
       "wave 0 (10%) holds: no device matches the selector ''"},
      {"no device assigned yet: hold", def, Running(0, kT0), Seen({}, 5, 0), t1, Action::kHold,
       Running(0, kT0), v1::ROLLOUT_EVENT_KIND_HELD,
       "no device assigned to it yet (target 1 of 5 matching devices, 0 assigned)"},
      {"a wave covered by earlier ones is skipped", Definition("50%,60%,100%"), Running(1, kT0),
       Seen({}, 1, 1), t1, Action::kPromote, Running(2, t1), v1::ROLLOUT_EVENT_KIND_PROMOTED,
       "wave 1 (60%) has no device of its own: its target of 1 of 1 matching devices is covered "
       "by earlier waves (1 assigned); starting wave 2 (100%)"},
      {"no soak: promote at once", no_soak, Running(0, kT0), Seen(kAllServing), t1,
       Action::kPromote, Running(1, t1), v1::ROLLOUT_EVENT_KIND_PROMOTED,
       "wave 0 (10%) passed its gates (10 targeted, 10 serving, 0 failed, 0 in progress); "
       "starting wave 1 (100%)"},
      {"no soak on the last wave: succeed at once",
       no_soak,
       Running(1, kT0),
       Seen(kAllServing),
       t1,
       Action::kSucceed,
       {S::ROLLOUT_STATE_SUCCEEDED, 1, kT0, {}, false},
       v1::ROLLOUT_EVENT_KIND_SUCCEEDED,
       "it was the last wave: the rollout succeeded"},
      {"paused: nothing",
       def,
       {S::ROLLOUT_STATE_PAUSED, 1, kT0, {}, false},
       Seen(kAllServing),
       t1,
       Action::kNone,
       {S::ROLLOUT_STATE_PAUSED, 1, kT0, {}, false},
       v1::ROLLOUT_EVENT_KIND_UNSPECIFIED,
       ""},
      {"succeeded: nothing",
       def,
       {S::ROLLOUT_STATE_SUCCEEDED, 2, kT0, {}, false},
       Seen(kInstallsFail),
       t1,
       Action::kNone,
       {S::ROLLOUT_STATE_SUCCEEDED, 2, kT0, {}, false},
       v1::ROLLOUT_EVENT_KIND_UNSPECIFIED,
       ""},
      {"rolled back: nothing",
       def,
       {S::ROLLOUT_STATE_ROLLED_BACK, 0, kT0, {}, false},
       Seen(kInstallsFail),
       t1,
       Action::kNone,
       {S::ROLLOUT_STATE_ROLLED_BACK, 0, kT0, {}, false},
       v1::ROLLOUT_EVENT_KIND_UNSPECIFIED,
       ""},
  };
}

std::string Fingerprint(const Decision& d) {
  std::string text = absl::StrCat(static_cast<int>(d.action), "|", d.next.state, "|",
                                  d.next.current_wave, "|", d.next.promote_requested, "|");
  if (d.event) text += d.event->SerializeAsString();
  for (const auto& g : d.gates) text += g.SerializeAsString();
  return text;
}

TEST(DecisionTest, TheDecisionTable) {
  for (const Row& row : Rows()) {
    SCOPED_TRACE(row.name);
    const Decision d = Decide(row.def, row.progress, row.seen, row.now);
    EXPECT_EQ(d.action, row.action);
    EXPECT_TRUE(d.next == row.next);
    EXPECT_EQ(d.next.state, row.next.state);
    EXPECT_EQ(d.next.current_wave, row.next.current_wave);
    if (row.kind == v1::ROLLOUT_EVENT_KIND_UNSPECIFIED) {
      EXPECT_FALSE(d.event.has_value());
      continue;
    }
    ASSERT_TRUE(d.event.has_value());
    EXPECT_EQ(d.event->kind(), row.kind);
    EXPECT_TRUE(absl::StrContains(d.event->message(), row.message_has)) << d.event->message();
    EXPECT_EQ(d.event->actor(), v1::ROLLOUT_ACTOR_CONTROLLER);
    EXPECT_EQ(d.event->at().seconds(), ToUnixSeconds(row.now));
    EXPECT_EQ(d.event->from_state(), row.progress.state);
    EXPECT_EQ(d.event->to_state(), row.next.state);
    EXPECT_EQ(d.event->wave(), row.progress.current_wave);
    EXPECT_EQ(d.event->gates_size(), static_cast<int>(d.gates.size()));
  }
}

TEST(DecisionTest, DecidingTwiceOnTheSameInputsGivesTheSameDecision) {
  for (const Row& row : Rows()) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(Fingerprint(Decide(row.def, row.progress, row.seen, row.now)),
              Fingerprint(Decide(row.def, row.progress, row.seen, row.now)));
  }
}

TEST(DecisionTest, ApplyingADecisionAndDecidingAgainDoesNotRepeatIt) {
  const auto def = Definition();
  // The soak starts once; the next evaluation at the same moment holds.
  Decision start = Decide(def, Running(0, kT0), Seen(kAllServing), kT0 + minutes(1));
  ASSERT_EQ(start.action, Action::kStartSoak);
  Decision again = Decide(def, start.next, Seen(kAllServing), kT0 + minutes(1));
  EXPECT_EQ(again.action, Action::kHold);
  EXPECT_EQ(again.next, start.next);
}

TEST(DecisionTest, FailedGatesAreInTheEventWithValueAndThreshold) {
  const Decision d = Decide(Definition(), Running(0, kT0), Seen(kInstallsFail), kT0);
  ASSERT_TRUE(d.event.has_value());
  ASSERT_EQ(d.event->gates_size(), 3);
  const v1::GateResult& install = d.event->gates(0);
  EXPECT_EQ(install.gate(), v1::GATE_INSTALL_FAILURES);
  EXPECT_EQ(install.result(), v1::GATE_OUTCOME_FAIL);
  EXPECT_DOUBLE_EQ(install.value(), 30);
  EXPECT_DOUBLE_EQ(install.threshold(), 5);
}

// A good version through three waves, 20 devices, soak 30 s, evaluating every 5 s.
TEST(DecisionTest, AGoodVersionGoesThroughThreeWaves) {
  v1::CreateRolloutRequest request;
  request.set_name("good");
  request.set_model_name("m");
  request.set_version("2");
  request.mutable_soak()->set_seconds(30);
  request.mutable_gates()->set_inference_gates(false);
  AddWaves("10%,50%,100%", &request);
  const RolloutDefinition def = *ValidateCreateRollout(request);

  RolloutProgress progress;
  uint64_t assigned = 0;
  std::vector<uint64_t> wave_sizes;
  std::vector<v1::RolloutEventKind> kinds;
  Clock::TimePoint now = kT0;
  for (int step = 0; step < 100 && progress.state != S::ROLLOUT_STATE_SUCCEEDED; ++step) {
    now += seconds(5);
    // Devices of the current wave all serve one evaluation after they were targeted.
    const uint64_t in_wave = wave_sizes.empty() ? 0 : wave_sizes.back();
    const bool reported = progress.wave_started_at && now > *progress.wave_started_at + seconds(5);
    WaveCounts counts{in_wave, reported ? in_wave : 0, 0, 0, 0, 0};
    Decision d = Decide(def, progress, {counts, 20, assigned}, now);
    ASSERT_NE(d.action, Action::kNone);
    ASSERT_TRUE(d.event.has_value());
    if (d.action == Action::kStartWave || d.action == Action::kPromote) {
      const uint64_t target = CumulativeTarget(def.plan, d.next.current_wave, 20);
      wave_sizes.push_back(target - assigned);
      assigned = target;
    }
    if (d.event->kind() != v1::ROLLOUT_EVENT_KIND_HELD) kinds.push_back(d.event->kind());
    progress = d.next;
  }
  EXPECT_EQ(progress.state, S::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(wave_sizes, (std::vector<uint64_t>{2, 8, 10}));
  using K = v1::RolloutEventKind;
  EXPECT_EQ(kinds,
            (std::vector<K>{K::ROLLOUT_EVENT_KIND_WAVE_STARTED, K::ROLLOUT_EVENT_KIND_SOAK_STARTED,
                            K::ROLLOUT_EVENT_KIND_PROMOTED, K::ROLLOUT_EVENT_KIND_SOAK_STARTED,
                            K::ROLLOUT_EVENT_KIND_PROMOTED, K::ROLLOUT_EVENT_KIND_SOAK_STARTED,
                            K::ROLLOUT_EVENT_KIND_SUCCEEDED}));
}

struct OperatorRow {
  S state;
  OperatorAction action;
  bool allowed;
  S to;  // when allowed
};

TEST(DecisionTest, OperatorTransitions) {
  using A = OperatorAction;
  const OperatorRow rows[] = {
      {S::ROLLOUT_STATE_PENDING, A::kPause, true, S::ROLLOUT_STATE_PAUSED},
      {S::ROLLOUT_STATE_RUNNING, A::kPause, true, S::ROLLOUT_STATE_PAUSED},
      {S::ROLLOUT_STATE_PAUSED, A::kPause, false, {}},
      {S::ROLLOUT_STATE_SUCCEEDED, A::kPause, false, {}},
      {S::ROLLOUT_STATE_PAUSED, A::kResume, true, S::ROLLOUT_STATE_RUNNING},
      {S::ROLLOUT_STATE_RUNNING, A::kResume, false, {}},
      {S::ROLLOUT_STATE_SUCCEEDED, A::kResume, false, {}},
      {S::ROLLOUT_STATE_ABORTED, A::kResume, false, {}},
      {S::ROLLOUT_STATE_RUNNING, A::kPromote, true, S::ROLLOUT_STATE_RUNNING},
      {S::ROLLOUT_STATE_PAUSED, A::kPromote, false, {}},
      {S::ROLLOUT_STATE_PENDING, A::kPromote, false, {}},
      {S::ROLLOUT_STATE_PENDING, A::kAbort, true, S::ROLLOUT_STATE_ABORTED},
      {S::ROLLOUT_STATE_RUNNING, A::kAbort, true, S::ROLLOUT_STATE_ABORTED},
      {S::ROLLOUT_STATE_PAUSED, A::kAbort, true, S::ROLLOUT_STATE_ABORTED},
      {S::ROLLOUT_STATE_SUCCEEDED, A::kAbort, false, {}},
      {S::ROLLOUT_STATE_ABORTED, A::kAbort, false, {}},
      {S::ROLLOUT_STATE_RUNNING, A::kRollBack, true, S::ROLLOUT_STATE_ROLLED_BACK},
      {S::ROLLOUT_STATE_PAUSED, A::kRollBack, true, S::ROLLOUT_STATE_ROLLED_BACK},
      {S::ROLLOUT_STATE_SUCCEEDED, A::kRollBack, true, S::ROLLOUT_STATE_ROLLED_BACK},
      {S::ROLLOUT_STATE_ABORTED, A::kRollBack, true, S::ROLLOUT_STATE_ROLLED_BACK},
      {S::ROLLOUT_STATE_PENDING, A::kRollBack, false, {}},
      {S::ROLLOUT_STATE_ROLLED_BACK, A::kRollBack, false, {}},
  };
  const auto def = Definition();
  for (const OperatorRow& row : rows) {
    SCOPED_TRACE(absl::StrCat(StateName(row.state), " action ", static_cast<int>(row.action)));
    RolloutProgress progress{row.state, 1, kT0, {}, false};
    if (row.state == S::ROLLOUT_STATE_PENDING) progress = RolloutProgress{};
    auto d = ApplyOperatorAction(def, progress, row.action, "alice", "night shift", kT0);
    if (!row.allowed) {
      EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition) << d.status();
      continue;
    }
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->next.state, row.to);
    ASSERT_TRUE(d->event.has_value());
    EXPECT_EQ(d->event->actor(), v1::ROLLOUT_ACTOR_OPERATOR);
    EXPECT_EQ(d->event->operator_name(), "alice");
    EXPECT_TRUE(absl::EndsWith(d->event->message(), ": night shift")) << d->event->message();
    EXPECT_EQ(d->event->from_state(), row.state);
    EXPECT_EQ(d->event->to_state(), row.to);
  }
}

TEST(DecisionTest, ImpossibleOperatorActionsSayWhatIsPossible) {
  const auto def = Definition();
  RolloutProgress done{S::ROLLOUT_STATE_SUCCEEDED, 2, kT0, {}, false};
  EXPECT_EQ(
      ApplyOperatorAction(def, done, OperatorAction::kResume, "alice", "", kT0).status().message(),
      "rollout 'r' is SUCCEEDED: it cannot be resumed (only PAUSED rollouts resume)");
  auto promote =
      ApplyOperatorAction(def, Running(0, kT0), OperatorAction::kPromote, "alice", "", kT0);
  ASSERT_TRUE(promote.ok());
  EXPECT_TRUE(promote->next.promote_requested);
  EXPECT_EQ(promote->action, Action::kRequestPromote);
  auto twice = ApplyOperatorAction(def, promote->next, OperatorAction::kPromote, "bob", "", kT0);
  EXPECT_EQ(twice.status().message(),
            "rollout 'r': promotion of wave 0 (10%) was requested already; it promotes once its "
            "gates pass");
}

TEST(DecisionTest, WaveStatesForStatus) {
  const RolloutProgress soaking = Running(1, kT0, kT0);
  EXPECT_EQ(WaveStateOf(soaking, 0, v1::GATE_OUTCOME_PASS), v1::WAVE_STATE_PASSED);
  EXPECT_EQ(WaveStateOf(soaking, 1, v1::GATE_OUTCOME_PASS), v1::WAVE_STATE_SOAKING);
  EXPECT_EQ(WaveStateOf(soaking, 2, v1::GATE_OUTCOME_UNSPECIFIED), v1::WAVE_STATE_PENDING);
  EXPECT_EQ(WaveStateOf(Running(1, kT0), 1, v1::GATE_OUTCOME_INCONCLUSIVE), v1::WAVE_STATE_RUNNING);
  const RolloutProgress paused{S::ROLLOUT_STATE_PAUSED, 1, kT0, {}, false};
  EXPECT_EQ(WaveStateOf(paused, 1, v1::GATE_OUTCOME_FAIL), v1::WAVE_STATE_FAILED);
  EXPECT_EQ(WaveStateOf(paused, 1, v1::GATE_OUTCOME_INCONCLUSIVE), v1::WAVE_STATE_STOPPED);
  EXPECT_EQ(WaveStateOf({S::ROLLOUT_STATE_SUCCEEDED, 2, kT0, {}, false}, 2, v1::GATE_OUTCOME_PASS),
            v1::WAVE_STATE_PASSED);
}

TEST(DecisionTest, AWaveIsDescribedWithItsSpecCountsAndGates) {
  const auto def = Definition();
  const RolloutProgress progress = Running(1, kT0, kT0 + minutes(5));
  const v1::WaveStatus current = DescribeWave(def, progress, 1, kAllServing);
  EXPECT_EQ(current.index(), 1u);
  EXPECT_DOUBLE_EQ(current.spec().percent(), 50);
  EXPECT_EQ(current.spec().soak().seconds(), 3600);
  EXPECT_EQ(current.state(), v1::WAVE_STATE_SOAKING);
  EXPECT_EQ(current.serving(), 10u);
  EXPECT_EQ(current.gates_size(), 3);
  EXPECT_EQ(current.started_at().seconds(), ToUnixSeconds(kT0));
  EXPECT_EQ(current.soak_started_at().seconds(), ToUnixSeconds(kT0 + minutes(5)));
  const v1::WaveStatus next = DescribeWave(def, progress, 2, {});
  EXPECT_EQ(next.state(), v1::WAVE_STATE_PENDING);
  EXPECT_EQ(next.gates_size(), 0) << "a wave that has not started has no gate results";
}

TEST(DecisionTest, AStoredRolloutGivesItsDefinitionBack) {
  const auto def = Definition("5,50%,100%", v1::ROLLOUT_FAILURE_ACTION_ROLLBACK);
  const v1::Rollout stored = NewRollout(def);
  EXPECT_EQ(stored.state(), S::ROLLOUT_STATE_PENDING);
  ASSERT_EQ(stored.waves_size(), 3);
  auto again = DefinitionOf(stored);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->plan, def.plan);
  EXPECT_EQ(again->on_failure, def.on_failure);
  v1::Rollout corrupt = stored;
  corrupt.mutable_waves(2)->mutable_spec()->set_percent(40);
  EXPECT_EQ(DefinitionOf(corrupt).status().code(), absl::StatusCode::kInternal);
}

TEST(DecisionTest, HoldsForTheSameReasonAreRecognisedSoTheRecordStaysShort) {
  const auto def = Definition();
  auto hold = [&](WaveCounts counts, Clock::TimePoint now, RolloutProgress p = Running(0, kT0)) {
    Decision d = Decide(def, p, Seen(counts), now);
    EXPECT_EQ(d.action, Action::kHold);
    return *d.event;
  };
  const auto a = hold({10, 1, 0, 0, 0, 0}, kT0 + seconds(5));
  const auto b = hold({10, 2, 0, 0, 0, 0}, kT0 + seconds(10));
  EXPECT_NE(a.message(), b.message()) << "the numbers moved";
  EXPECT_TRUE(SameHold(a, b)) << "but the reason is the same";
  const auto c = hold({10, 9, 0, 0, 0, 0}, kT0 + seconds(15));
  EXPECT_FALSE(SameHold(b, c)) << "enough finished: the install gates now pass";
  const auto soak1 = hold(kAllServing, kT0 + minutes(1), Running(0, kT0, kT0));
  const auto soak2 = hold(kAllServing, kT0 + minutes(2), Running(0, kT0, kT0));
  EXPECT_TRUE(SameHold(soak1, soak2));
  EXPECT_FALSE(SameHold(a, soak1));
  const auto promoted = Decide(def, Running(0, kT0, kT0), Seen(kAllServing), kT0 + hours(2));
  EXPECT_FALSE(SameHold(*promoted.event, *promoted.event)) << "only holds are the same hold";
}

TEST(DecisionTest, PastWavesGetTheirStartTimesFromTheDecisionsThatStartedThem) {
  v1::Rollout r;
  for (int i = 0; i < 3; ++i) r.add_waves()->set_index(static_cast<uint32_t>(i));
  // The current wave's start comes from the stored progress and is kept.
  r.mutable_waves(2)->mutable_started_at()->set_seconds(300);
  auto add = [&](v1::RolloutEventKind kind, uint32_t wave, int64_t at) {
    v1::RolloutEvent* e = r.add_events();
    e->set_kind(kind);
    e->set_wave(wave);
    e->mutable_at()->set_seconds(at);
  };
  add(v1::ROLLOUT_EVENT_KIND_CREATED, 0, 50);
  add(v1::ROLLOUT_EVENT_KIND_WAVE_STARTED, 0, 100);
  add(v1::ROLLOUT_EVENT_KIND_HELD, 0, 150);
  add(v1::ROLLOUT_EVENT_KIND_PROMOTED, 0, 200);  // starts wave 1
  add(v1::ROLLOUT_EVENT_KIND_PROMOTED, 1, 290);  // starts wave 2 (its progress says 300)
  add(v1::ROLLOUT_EVENT_KIND_PROMOTED, 2, 400);  // the last wave: no wave 3
  FillWaveStartTimes(r);
  EXPECT_EQ(r.waves(0).started_at().seconds(), 100);
  EXPECT_EQ(r.waves(1).started_at().seconds(), 200);
  EXPECT_EQ(r.waves(2).started_at().seconds(), 300);
}

// Inference gates in decisions: they join the install gates, with the same actions and records.
RolloutDefinition WithInferenceGates(v1::RolloutFailureAction on_failure, uint64_t min) {
  RolloutDefinition def = Definition("10%,100%", on_failure);
  for (Wave& w : def.plan.waves) {
    w.gates.inference.enabled = true;
    w.gates.inference.min_inferences = min;
    w.gates.inference.min_devices = 1;
  }
  return def;
}

// One device's window of `n` requests answered in `seconds`, all in output class 0.
InferenceSide OneDevice(uint64_t n, double seconds) {
  v1::TelemetryWindow w;
  w.set_request_count(n);
  telemetry::LatencySketch sketch;
  sketch.AddCount(seconds, n);
  *w.mutable_latency() = telemetry::ToProto(sketch);
  w.mutable_outputs()->add_bins(n);
  w.mutable_outputs()->add_bins(0);
  InferenceSideBuilder b;
  EXPECT_TRUE(b.Add("d", w).ok());
  return std::move(b).Finish();
}

WaveObservation WithInference(InferenceSide canary, InferenceSide control,
                              v1::InferenceControl kind = v1::INFERENCE_CONTROL_LIVE) {
  WaveObservation seen = Seen(kAllServing);
  seen.inference.control = kind;
  seen.inference.control_version = "6";
  seen.inference.canary = std::move(canary);
  seen.inference.control_side = std::move(control);
  return seen;
}

TEST(DecisionTest, ASlowCanaryRollsBackOnItsInferenceGatesWithTheirNumbersOnRecord) {
  const auto def = WithInferenceGates(v1::ROLLOUT_FAILURE_ACTION_ROLLBACK, 100);
  const Decision d =
      Decide(def, Running(0, kT0), WithInference(OneDevice(200, 0.010), OneDevice(200, 0.001)),
             kT0 + minutes(1));
  EXPECT_EQ(d.action, Action::kRollBack);
  EXPECT_EQ(d.next.state, S::ROLLOUT_STATE_ROLLED_BACK);
  ASSERT_TRUE(d.event.has_value());
  EXPECT_EQ(d.event->kind(), v1::ROLLOUT_EVENT_KIND_ROLLED_BACK);
  EXPECT_TRUE(absl::StrContains(d.event->message(), "latency_p99_ratio: p99 "))
      << d.event->message();
  // The install gates first, then the four inference gates, all on record.
  ASSERT_EQ(d.event->gates_size(), 7);
  EXPECT_EQ(d.event->gates(3).gate(), v1::GATE_LATENCY_P99_RATIO);
  EXPECT_EQ(d.event->gates(3).result(), v1::GATE_OUTCOME_FAIL);
  EXPECT_EQ(d.event->gates(4).gate(), v1::GATE_LATENCY_P50_RATIO);
  EXPECT_EQ(d.event->gates(4).result(), v1::GATE_OUTCOME_FAIL);
  EXPECT_EQ(d.event->gates(5).result(), v1::GATE_OUTCOME_PASS);  // no errors
  EXPECT_EQ(d.event->gates(6).result(), v1::GATE_OUTCOME_PASS);  // same outputs
  EXPECT_GT(d.event->gates(3).value(), 9.0);

  // Paused instead, with on_failure pause.
  const Decision paused =
      Decide(WithInferenceGates(v1::ROLLOUT_FAILURE_ACTION_PAUSE, 100), Running(0, kT0),
             WithInference(OneDevice(200, 0.010), OneDevice(200, 0.001)), kT0 + minutes(1));
  EXPECT_EQ(paused.action, Action::kPause);
}

TEST(DecisionTest, InferenceGatesUnderTheirMinimumsHoldAndSayWhyOnce) {
  const auto def = WithInferenceGates(v1::ROLLOUT_FAILURE_ACTION_ROLLBACK, 1000);
  // Install gates all pass; the control side has 10 inferences: the wave holds, not fails.
  const Decision d =
      Decide(def, Running(0, kT0), WithInference(OneDevice(5000, 0.010), OneDevice(10, 0.001)),
             kT0 + minutes(1));
  EXPECT_EQ(d.action, Action::kHold);
  ASSERT_TRUE(d.event.has_value());
  EXPECT_EQ(d.event->message(),
            "wave 0 (10%) holds (10 targeted, 10 serving, 0 failed, 0 in progress): "
            "latency_p99_ratio, latency_p50_ratio, error_rate_increase, output_psi: canary 5000 "
            "inferences on 1 devices, control (live control, version 6) 10 inferences on 1 "
            "devices; at least 1000 inferences on 1 devices needed per side");
  // Nothing observed at all (the controller read no sample): inconclusive too, never a pass.
  EXPECT_EQ(Decide(def, Running(0, kT0), Seen(kAllServing), kT0 + minutes(1)).action,
            Action::kHold);
  // Switched off: the install gates alone decide.
  auto off = def;
  for (Wave& w : off.plan.waves) w.gates.inference.enabled = false;
  const Decision passes = Decide(off, Running(0, kT0), Seen(kAllServing), kT0 + minutes(1));
  EXPECT_EQ(passes.action, Action::kStartSoak);
  EXPECT_EQ(passes.gates.size(), 3u);
}

TEST(DecisionTest, AFirstInstallHasNoInferenceControlAndGoesOn) {
  const auto def = WithInferenceGates(v1::ROLLOUT_FAILURE_ACTION_ROLLBACK, 1000);
  WaveObservation seen = Seen(kAllServing);
  seen.inference.control = v1::INFERENCE_CONTROL_NONE;
  const Decision d = Decide(def, Running(0, kT0), seen, kT0 + minutes(1));
  EXPECT_EQ(d.action, Action::kStartSoak);
  ASSERT_EQ(d.gates.size(), 7u);
  EXPECT_EQ(d.gates[3].result(), v1::GATE_OUTCOME_NOT_APPLICABLE);
}

}  // namespace
}  // namespace edgefleet::server::rollout
