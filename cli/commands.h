// edgefleetctl's command dispatch: turns a command line into admin or inference API calls and
// renders the result; main.cpp only forwards argv here.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/admin_client.h"
#include "cli/args.h"
#include "cli/output.h"

namespace edgefleet::cli {

inline constexpr char kDefaultServer[] = "127.0.0.1:7444";

// Flags every command accepts, before or after the subcommand.
struct GlobalOptions {
  std::string server = kDefaultServer;
  std::string token;
  OutputFormat output = OutputFormat::kTable;
  std::chrono::seconds timeout{30};
};

// Looks up an environment variable; injectable so tests do not touch the process environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup ProcessEnv();

// Flags win over EDGEFLEET_SERVER / EDGEFLEET_TOKEN, which win over the defaults.
// kInvalidArgument for a bad -o or --timeout.
absl::StatusOr<GlobalOptions> ResolveGlobalOptions(const ParsedArgs& args, const EnvLookup& env);

// How commands reach the server and the agent; tests substitute fakes.
struct Clients {
  std::function<std::unique_ptr<AdminClient>(const AdminClientOptions&)> admin =
      &AdminClient::Create;
  std::function<std::unique_ptr<InferenceClient>(const std::string& socket_path,
                                                 std::chrono::seconds timeout)>
      inference = &InferenceClient::Create;
  // How `rollout status --watch` waits between polls; tests substitute one that returns at once.
  std::function<void(std::chrono::milliseconds)> wait = [](std::chrono::milliseconds d) {
    std::this_thread::sleep_for(d);
  };
};

// Runs one command line (without the program name). Returns the exit code: 0 success, 1 the
// operation failed (one line on `err`: "edgefleetctl: <what>: <CODE>: <message>"), 2 usage error.
int Run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
        const EnvLookup& env = ProcessEnv(), const Clients& clients = Clients());

// argv as main() receives it, program name first.
int Run(int argc, const char* const argv[], std::ostream& out, std::ostream& err);

// Usage of every command.
void PrintUsage(std::ostream& out);

}  // namespace edgefleet::cli
