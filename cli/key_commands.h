// edgefleetctl's `keys` commands: the operator's offline root key and its delegations of release
// signing to the server's online key (TUF's root role). They need no server and are meant to run
// where the root key is kept, away from the fleet server.
#pragma once

#include <ostream>
#include <set>
#include <string>

#include "cli/args.h"
#include "common/core/clock.h"

namespace edgefleet::cli {

// Flags only the keys commands take.
const std::set<std::string>& KeyFlags();

// Runs `init|delegate|rotate|show ...`; `parsed.positionals[0]` is the subcommand. Exit codes: 0
// success, 1 the operation failed (one line: "edgefleetctl: keys COMMAND: CODE: message"), 2 usage.
int RunKeys(const ParsedArgs& parsed, std::ostream& out, std::ostream& err,
            const Clock& clock = SystemClock());

void PrintKeysUsage(std::ostream& out);

}  // namespace edgefleet::cli
