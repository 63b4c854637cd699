// edgefleetctl's `delta` commands: make, apply and inspect model patches between local files,
// without a server, so operators can check what a rollout would download before pushing it.
#pragma once

#include <ostream>
#include <set>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"

namespace edgefleet::cli {

// Flags only the delta commands take ("codec", "time-budget"); Run() parses them with the rest.
const std::set<std::string>& DeltaFlags();

// Runs `delta diff|apply|info ...`; `parsed.positionals[0]` is "delta". Same exit codes and error
// line as Run(): 0 success, 1 the operation failed, 2 usage error.
int RunDelta(const ParsedArgs& parsed, std::ostream& out, std::ostream& err, const EnvLookup& env);

// The delta section of `edgefleetctl help`.
void PrintDeltaUsage(std::ostream& out);

}  // namespace edgefleet::cli
