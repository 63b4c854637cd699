// edgefleetctl's `delta` commands: make, apply and inspect model patches between local files,
// without a server, so operators can check what a rollout would download before pushing it.
#pragma once

#include <functional>
#include <ostream>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "cli/args.h"
#include "cli/output_format.h"

namespace edgefleet::cli {

// Flags only the delta commands take ("codec", "time-budget"); front ends parse them with theirs.
const std::set<std::string>& DeltaFlags();

// How the delta commands are reached: as `edgefleetctl delta ...`, or as the standalone
// `edgefleet-delta ...` that links nothing but the delta engine (for build pipelines and for
// devices that run their own agent).
struct DeltaFrontEnd {
  std::string program;                // "edgefleetctl", first word of every message
  std::string command_prefix;         // "delta " (with the space), or "" for edgefleet-delta
  std::set<std::string> other_flags;  // the front end's own flags, accepted on every command
  // The output format that the front end's flags (and environment) ask for.
  std::function<absl::StatusOr<OutputFormat>(const ParsedArgs&)> output_format;
};

// Runs `diff|apply|info ...`; `parsed.positionals[0]` is the subcommand. Exit codes: 0 success,
// 1 the operation failed (one line: "PROGRAM: [delta ]COMMAND: CODE: message"), 2 usage error.
int RunDelta(const DeltaFrontEnd& front, const ParsedArgs& parsed, std::ostream& out,
             std::ostream& err);

// One entry per delta command: its name, summary and usage line.
void PrintDeltaUsage(const DeltaFrontEnd& front, std::ostream& out);

}  // namespace edgefleet::cli
