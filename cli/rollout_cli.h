// edgefleetctl's rollout pieces that need no server: the create request built from flags and the
// human rendering of a rollout (its waves, gate results and decision events).
#pragma once

#include <ostream>

#include "absl/status/statusor.h"
#include "cli/args.h"
#include "edgefleet/v1/rollout.pb.h"

namespace edgefleet::cli {

// `rollout create NAME --model M --version V [--selector k=v,...] [--waves 10%,50%,100%]
// [--soak 30s] [--max-failure-pct 5] [--min-devices N] [--on-failure pause|abort|rollback]`.
// --max-failure-pct bounds both install and probation failures; --min-devices is how many devices
// must have finished before those gates decide. InvalidArgument naming the flag on a bad value.
absl::StatusOr<v1::CreateRolloutRequest> CreateRolloutRequestFromFlags(const std::string& name,
                                                                       const ParsedArgs& args);

// SUCCEEDED, ABORTED and ROLLED_BACK: nothing more will happen to the rollout.
bool IsFinalRolloutState(v1::RolloutState state);

// "RUNNING", "ROLLED_BACK", ...: the state without its enum prefix.
std::string RolloutStateName(v1::RolloutState state);

// The rollout's fields, a table of its waves, a table of every wave's gate results (value against
// threshold) and a table of its decision events.
void RenderRollout(const v1::Rollout& rollout, std::ostream& out);
// One line per rollout.
void RenderRolloutList(const v1::ListRolloutsResponse& list, std::ostream& out);

}  // namespace edgefleet::cli
