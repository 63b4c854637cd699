// edgefleet-delta: the delta engine's diff, apply and info on local files, in a binary that links
// nothing else (no gRPC, no protobuf), for build pipelines and for devices with their own agent.
// Same commands, flags, output and exit codes as `edgefleetctl delta`.
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/delta_commands.h"

int main(int argc, char** argv) {
  using edgefleet::cli::DeltaFrontEnd;
  using edgefleet::cli::OutputFormat;
  using edgefleet::cli::ParsedArgs;
  const DeltaFrontEnd front{
      .program = "edgefleet-delta",
      .command_prefix = "",
      .other_flags = {"o", "help"},
      .output_format = [](const ParsedArgs& args) -> absl::StatusOr<OutputFormat> {
        std::optional<std::string> o = args.Get("o");
        return o ? edgefleet::cli::ParseOutputFormat(*o) : OutputFormat::kTable;
      }};
  std::set<std::string> known = front.other_flags;
  known.insert(edgefleet::cli::DeltaFlags().begin(), edgefleet::cli::DeltaFlags().end());
  absl::StatusOr<ParsedArgs> parsed =
      edgefleet::cli::ParseArgs(std::vector<std::string>(argv + 1, argv + argc), {"help"}, known);
  if (!parsed.ok()) {
    std::cerr << front.program << ": " << parsed.status().message() << "\n"
              << "usage: " << front.program << " diff|apply|info ... [-o table|json]\n";
    return 2;
  }
  if (parsed->positionals.empty() || parsed->positionals[0] == "help") {
    std::ostream& out = parsed->positionals.empty() && !parsed->Has("help") ? std::cerr : std::cout;
    out << "usage: " << front.program << " COMMAND [args] [-o table|json]\n\nCommands:\n";
    edgefleet::cli::PrintDeltaUsage(front, out);
    return &out == &std::cerr ? 2 : 0;
  }
  return edgefleet::cli::RunDelta(front, *parsed, std::cout, std::cerr);
}
