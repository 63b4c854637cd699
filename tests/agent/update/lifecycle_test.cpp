// The update lifecycle's transition table and the probation verdict: pure functions, tested row
// by row.
#include "agent/update/lifecycle.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "agent/update/probation.h"

namespace edgefleet::agent {
namespace {

using S = UpdateState;
using E = UpdateEvent;
using A = UpdateAction;
using std::chrono::seconds;

constexpr S kAllStates[] = {S::kIdle,      S::kFetching,    S::kVerifying,
                            S::kStaged,    S::kActivating,  S::kProbation,
                            S::kCommitted, S::kRollingBack, S::kFailed};

struct Row {
  S from;
  E event;
  S to;
  A action;
};

void PrintTo(const Row& r, std::ostream* os) {
  *os << UpdatePhaseName(r.from) << " --" << UpdateEventName(r.event) << "--> "
      << UpdatePhaseName(r.to) << " / " << UpdateActionName(r.action);
}

class TransitionTableTest : public ::testing::TestWithParam<Row> {};

TEST_P(TransitionTableTest, LeadsToItsStateAndAction) {
  const Row& row = GetParam();
  auto t = NextTransition(row.from, row.event);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(UpdatePhaseName(t->to), std::string(UpdatePhaseName(row.to)));
  EXPECT_EQ(UpdateActionName(t->action), std::string(UpdateActionName(row.action)));
}

INSTANTIATE_TEST_SUITE_P(Lifecycle, TransitionTableTest,
                         ::testing::Values(
                             // The happy path, from rest to committed.
                             Row{S::kIdle, E::kOffered, S::kFetching, A::kFetch},
                             Row{S::kFetching, E::kFetched, S::kVerifying, A::kVerify},
                             Row{S::kVerifying, E::kVerified, S::kStaged, A::kStage},
                             Row{S::kStaged, E::kStaged, S::kActivating, A::kActivate},
                             Row{S::kActivating, E::kSwapped, S::kProbation, A::kWatch},
                             Row{S::kProbation, E::kProbationPassed, S::kCommitted, A::kCommit},
                             Row{S::kCommitted, E::kOffered, S::kFetching, A::kFetch},
                             Row{S::kFailed, E::kOffered, S::kFetching, A::kFetch},
                             // The kept previous version: no download, no probation.
                             Row{S::kCommitted, E::kKeptCopyOffered, S::kVerifying, A::kVerify},
                             Row{S::kActivating, E::kSwappedKnownGood, S::kCommitted, A::kCommit},
                             // Failures: recorded; rolled back once a swap may have happened.
                             Row{S::kIdle, E::kStepFailed, S::kFailed, A::kRecordFailure},
                             Row{S::kFetching, E::kStepFailed, S::kFailed, A::kRecordFailure},
                             Row{S::kVerifying, E::kStepFailed, S::kFailed, A::kRecordFailure},
                             Row{S::kStaged, E::kStepFailed, S::kFailed, A::kRecordFailure},
                             Row{S::kActivating, E::kStepFailed, S::kRollingBack, A::kRollBack},
                             Row{S::kProbation, E::kStepFailed, S::kRollingBack, A::kRollBack},
                             Row{S::kProbation, E::kProbationFailed, S::kRollingBack, A::kRollBack},
                             Row{S::kRollingBack, E::kRolledBack, S::kFailed, A::kRecordFailure},
                             // Start-up reads the saved state back.
                             Row{S::kIdle, E::kRestarted, S::kIdle, A::kNone},
                             Row{S::kFetching, E::kRestarted, S::kIdle, A::kNone},
                             Row{S::kVerifying, E::kRestarted, S::kIdle, A::kNone},
                             Row{S::kStaged, E::kRestarted, S::kIdle, A::kNone},
                             Row{S::kActivating, E::kRestarted, S::kRollingBack, A::kRollBack},
                             Row{S::kProbation, E::kRestarted, S::kProbation, A::kResumeProbation},
                             Row{S::kProbation, E::kRestartedInCrashLoop, S::kRollingBack,
                                 A::kRollBack},
                             Row{S::kRollingBack, E::kRestarted, S::kRollingBack, A::kRollBack},
                             Row{S::kCommitted, E::kRestarted, S::kIdle, A::kNone},
                             Row{S::kFailed, E::kRestarted, S::kIdle, A::kNone}));

// Every state the agent can save has a way forward at start-up: nothing is stuck after a crash.
TEST(TransitionTableCompletenessTest, EveryStateHasARestartRow) {
  for (S s : kAllStates) {
    EXPECT_TRUE(NextTransition(s, E::kRestarted).ok()) << UpdatePhaseName(s);
  }
}

// Events that cannot happen in a state are refused, not guessed at.
TEST(TransitionTableCompletenessTest, EventsOutOfPlaceAreRefused) {
  for (auto [s, e] : std::vector<std::pair<S, E>>{{S::kIdle, E::kFetched},
                                                  {S::kFetching, E::kSwapped},
                                                  {S::kProbation, E::kOffered},
                                                  {S::kRollingBack, E::kOffered},
                                                  {S::kStaged, E::kProbationPassed},
                                                  {S::kIdle, E::kRestartedInCrashLoop}}) {
    auto t = NextTransition(s, e);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kFailedPrecondition)
        << UpdatePhaseName(s) << " on " << UpdateEventName(e);
  }
  // A release is never offered while an update is between its steps.
  for (S s :
       {S::kFetching, S::kVerifying, S::kStaged, S::kActivating, S::kProbation, S::kRollingBack}) {
    EXPECT_FALSE(NextTransition(s, E::kOffered).ok()) << UpdatePhaseName(s);
  }
}

// --- the probation verdict (window 60 s, 50 requests, 2x latency, 1% errors) ---

ProbationEvidence Evidence(seconds elapsed, uint64_t answers, uint64_t errors = 0,
                           uint64_t non_finite = 0) {
  ProbationEvidence e;
  e.elapsed = elapsed;
  e.answers = answers;
  e.errors = errors;
  e.non_finite = non_finite;
  return e;
}

ProbationEvidence WithLatency(ProbationEvidence e, double p95, double previous_p95,
                              size_t samples = 50) {
  e.p95_seconds = p95;
  e.latency_samples = samples;
  e.previous_p95_seconds = previous_p95;
  e.previous_latency_samples = samples;
  return e;
}

ProbationVerdict Verdict(const ProbationEvidence& e) { return JudgeProbation({}, e).verdict; }

TEST(ProbationJudgeTest, WithoutTrafficTheWindowAloneDecides) {
  EXPECT_EQ(Verdict(Evidence(seconds(59), 0)), ProbationVerdict::kWatching);
  EXPECT_EQ(Verdict(Evidence(seconds(60), 0)), ProbationVerdict::kPassed);
}

TEST(ProbationJudgeTest, WithTrafficTheMinimumOfRequestsIsAwaited) {
  EXPECT_EQ(Verdict(Evidence(seconds(60), 49)), ProbationVerdict::kWatching);
  EXPECT_EQ(Verdict(Evidence(seconds(60), 50)), ProbationVerdict::kPassed);
  EXPECT_EQ(Verdict(Evidence(seconds(59), 500)), ProbationVerdict::kWatching)
      << "good answers never cut the window short";
  // Traffic that stays low: what was seen decides after ten windows.
  EXPECT_EQ(Verdict(Evidence(seconds(599), 3)), ProbationVerdict::kWatching);
  EXPECT_EQ(Verdict(Evidence(seconds(600), 3)), ProbationVerdict::kPassed);
}

TEST(ProbationJudgeTest, ErrorsFailOnceThereIsEnoughEvidence) {
  // 1% of 100 answers is tolerated, 2 is not.
  EXPECT_EQ(Verdict(Evidence(seconds(60), 100, 1)), ProbationVerdict::kPassed);
  EXPECT_EQ(Verdict(Evidence(seconds(10), 100, 2)), ProbationVerdict::kFailed)
      << "bad evidence does not wait for the window";
  EXPECT_EQ(Verdict(Evidence(seconds(10), 49, 49)), ProbationVerdict::kWatching);
  const ProbationResult r = JudgeProbation({}, Evidence(seconds(10), 50, 7));
  EXPECT_EQ(r.verdict, ProbationVerdict::kFailed);
  EXPECT_EQ(r.detail, "errors 7/50, non-finite 0, p95 n/a vs n/a (limit 2x) after 10s");
}

TEST(ProbationJudgeTest, OneNonFiniteAnswerFailsAtOnce) {
  EXPECT_EQ(Verdict(Evidence(seconds(1), 1, 0, 1)), ProbationVerdict::kFailed);
}

TEST(ProbationJudgeTest, P95AboveTheLimitOfThePreviousFails) {
  const ProbationResult slow =
      JudgeProbation({}, WithLatency(Evidence(seconds(60), 50), 0.041, 0.009));
  EXPECT_EQ(slow.verdict, ProbationVerdict::kFailed);
  EXPECT_EQ(slow.detail, "errors 0/50, non-finite 0, p95 41.0ms vs 9.0ms (limit 2x) after 60s");
  EXPECT_EQ(Verdict(WithLatency(Evidence(seconds(60), 50), 0.018, 0.009)),
            ProbationVerdict::kPassed)
      << "exactly at the limit";
  ProbationPolicy lenient;
  lenient.latency_ratio = 5;
  EXPECT_EQ(JudgeProbation(lenient, WithLatency(Evidence(seconds(60), 50), 0.041, 0.009)).verdict,
            ProbationVerdict::kPassed);
  // Sub-millisecond baselines are noise: compared against 1 ms.
  EXPECT_EQ(Verdict(WithLatency(Evidence(seconds(60), 50), 0.0019, 0.0001)),
            ProbationVerdict::kPassed);
  // Too few samples on either side: latency is not judged.
  EXPECT_EQ(Verdict(WithLatency(Evidence(seconds(60), 50), 0.041, 0.009, 9)),
            ProbationVerdict::kPassed);
}

}  // namespace
}  // namespace edgefleet::agent
