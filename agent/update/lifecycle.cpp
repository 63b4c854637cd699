#include "agent/update/lifecycle.h"

#include <iterator>

#include "absl/strings/str_cat.h"

namespace edgefleet::agent {
namespace {

using S = UpdateState;
using E = UpdateEvent;
using A = UpdateAction;

struct Row {
  S from;
  E event;
  S to;
  A action;
};

// The whole lifecycle. Rows are looked up by (from, event); a pair appears at most once.
constexpr Row kTable[] = {
    // An offer starts from rest: nothing in flight, the last update committed or failed.
    {S::kIdle, E::kOffered, S::kFetching, A::kFetch},
    {S::kCommitted, E::kOffered, S::kFetching, A::kFetch},
    {S::kFailed, E::kOffered, S::kFetching, A::kFetch},
    {S::kIdle, E::kKeptCopyOffered, S::kVerifying, A::kVerify},
    {S::kCommitted, E::kKeptCopyOffered, S::kVerifying, A::kVerify},
    {S::kFailed, E::kKeptCopyOffered, S::kVerifying, A::kVerify},
    // A release refused before it is fetched (signature, expiry, rollback, name).
    {S::kIdle, E::kStepFailed, S::kFailed, A::kRecordFailure},
    {S::kCommitted, E::kStepFailed, S::kFailed, A::kRecordFailure},
    {S::kFailed, E::kStepFailed, S::kFailed, A::kRecordFailure},

    {S::kFetching, E::kFetched, S::kVerifying, A::kVerify},
    {S::kVerifying, E::kVerified, S::kStaged, A::kStage},
    {S::kStaged, E::kStaged, S::kActivating, A::kActivate},
    {S::kActivating, E::kSwapped, S::kProbation, A::kWatch},
    {S::kActivating, E::kSwappedKnownGood, S::kCommitted, A::kCommit},
    {S::kProbation, E::kProbationPassed, S::kCommitted, A::kCommit},
    {S::kProbation, E::kProbationFailed, S::kRollingBack, A::kRollBack},
    {S::kRollingBack, E::kRolledBack, S::kFailed, A::kRecordFailure},

    // Before the swap nothing serves the new version: a failure only records itself. From
    // Activating on, the version may be committed and serving, so it is rolled back first.
    {S::kFetching, E::kStepFailed, S::kFailed, A::kRecordFailure},
    {S::kVerifying, E::kStepFailed, S::kFailed, A::kRecordFailure},
    {S::kStaged, E::kStepFailed, S::kFailed, A::kRecordFailure},
    {S::kActivating, E::kStepFailed, S::kRollingBack, A::kRollBack},
    {S::kProbation, E::kStepFailed, S::kRollingBack, A::kRollBack},

    // A start of the agent finds the state it saved last.
    {S::kIdle, E::kRestarted, S::kIdle, A::kNone},
    {S::kCommitted, E::kRestarted, S::kIdle, A::kNone},
    {S::kFailed, E::kRestarted, S::kIdle, A::kNone},
    // The committed version still serves; the partial download stays for the next offer.
    {S::kFetching, E::kRestarted, S::kIdle, A::kNone},
    {S::kVerifying, E::kRestarted, S::kIdle, A::kNone},
    {S::kStaged, E::kRestarted, S::kIdle, A::kNone},
    // The new version may have taken the agent down while loading: a failed attempt.
    {S::kActivating, E::kRestarted, S::kRollingBack, A::kRollBack},
    {S::kProbation, E::kRestarted, S::kProbation, A::kResumeProbation},
    // Damaged on disk while the agent was down: not the release's fault, fetched again at once.
    {S::kProbation, E::kStoredCopyDamaged, S::kIdle, A::kRepair},
    {S::kProbation, E::kRestartedInCrashLoop, S::kRollingBack, A::kRollBack},
    {S::kRollingBack, E::kRestarted, S::kRollingBack, A::kRollBack},
};

}  // namespace

absl::StatusOr<UpdateTransition> NextTransition(UpdateState from, UpdateEvent event) {
  for (const Row& row : kTable) {
    if (row.from == from && row.event == event) return UpdateTransition{row.to, row.action};
  }
  return absl::FailedPreconditionError(
      absl::StrCat("no transition from ", UpdatePhaseName(from), " on ", UpdateEventName(event)));
}

const char* UpdateEventName(UpdateEvent event) {
  switch (event) {
    case E::kOffered:
      return "offered";
    case E::kKeptCopyOffered:
      return "kept-copy-offered";
    case E::kFetched:
      return "fetched";
    case E::kVerified:
      return "verified";
    case E::kStaged:
      return "staged";
    case E::kSwapped:
      return "swapped";
    case E::kSwappedKnownGood:
      return "swapped-known-good";
    case E::kProbationPassed:
      return "probation-passed";
    case E::kProbationFailed:
      return "probation-failed";
    case E::kStepFailed:
      return "step-failed";
    case E::kRolledBack:
      return "rolled-back";
    case E::kRestarted:
      return "restarted";
    case E::kRestartedInCrashLoop:
      return "restarted-in-crash-loop";
    case E::kStoredCopyDamaged:
      return "stored-copy-damaged";
  }
  return "unknown";
}

const char* UpdateActionName(UpdateAction action) {
  switch (action) {
    case A::kNone:
      return "none";
    case A::kFetch:
      return "fetch";
    case A::kVerify:
      return "verify";
    case A::kStage:
      return "stage";
    case A::kActivate:
      return "activate";
    case A::kWatch:
      return "watch";
    case A::kResumeProbation:
      return "resume-probation";
    case A::kCommit:
      return "commit";
    case A::kRollBack:
      return "roll-back";
    case A::kRecordFailure:
      return "record-failure";
    case A::kRepair:
      return "repair";
  }
  return "unknown";
}

}  // namespace edgefleet::agent
