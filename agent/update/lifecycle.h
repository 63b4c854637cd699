// The agent's update lifecycle as a transition table: which state an event leads to and which
// action the Updater runs there. Pure (no I/O), so every row is tested on its own; the Updater
// saves each state before it enters it and executes the actions.
//
//   Idle/Committed/Failed --offered--> Fetching --fetched--> Verifying --verified--> Staged
//   --staged--> Activating (load, warm up, commit, swap) --swapped--> Probation
//   --passed--> Committed | --failed--> RollingBack --rolled back--> Failed
// A step's error leads to Failed (RollingBack first once a swap may have happened). A start of
// the agent reads the saved state back: before the swap the interrupted attempt is forgotten (a
// download resumes at the next offer); in Activating it is rolled back; in Probation it resumes
// its probation, unless the agent is restarting in a loop, which rolls it back.
#pragma once

#include "absl/status/statusor.h"
#include "agent/state/state_store.h"

namespace edgefleet::agent {

using UpdateState = StateStore::UpdatePhase;

enum class UpdateEvent {
  kOffered,          // a due release whose manifest verified, to be downloaded
  kKeptCopyOffered,  // a due release of the version kept as previous, which verifies on disk
  kFetched,          // its bytes are on disk (patched or downloaded) and match the digest
  kVerified,
  kStaged,
  kSwapped,           // the new version serves
  kSwappedKnownGood,  // the kept previous version serves again (it passed probation before)
  kProbationPassed,
  kProbationFailed,
  kStepFailed,  // the action failed or the next state could not be saved
  kRolledBack,
  kRestarted,             // the agent started and found this state saved
  kRestartedInCrashLoop,  // ... in Probation, for the crash-limit-th time
  kStoredCopyDamaged,     // the version to resume no longer matches its signed digest
};

enum class UpdateAction {
  kNone,
  kFetch,            // download (patch or full, resumable) and check the digest
  kVerify,           // report the verified bytes
  kStage,            // move them into their version directory
  kActivate,         // load, warm up, commit the version durably, swap it in
  kWatch,            // start the probation watch
  kResumeProbation,  // after a restart: serve the version on probation again and watch it
  kCommit,           // end the update: the version is known good
  kRollBack,         // swap the previous version back in and make it current again
  kRecordFailure,    // count the failed attempt and report it
  kRepair,  // drop a damaged stored version, serve the previous one, fetch it again (uncounted)
};

struct UpdateTransition {
  UpdateState to;
  UpdateAction action;
};

// The row for `event` in state `from`; FailedPrecondition when the table has none (a bug in the
// caller, never a state the agent can reach).
absl::StatusOr<UpdateTransition> NextTransition(UpdateState from, UpdateEvent event);

const char* UpdateEventName(UpdateEvent event);
const char* UpdateActionName(UpdateAction action);

}  // namespace edgefleet::agent
