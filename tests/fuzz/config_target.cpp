// Fuzzing the config loader: a config file's JSON, then environment variables and flags on top,
// for the agent's and the server's config messages.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/config/config.h"
#include "edgefleet/v1/config.pb.h"
#include "tests/fuzz/input_targets.h"

namespace edgefleet::fuzz {

absl::Status RunConfig(std::string_view input) {
  if (input.empty()) return absl::InvalidArgumentError("empty input");
  std::unique_ptr<google::protobuf::Message> config;
  if (input[0] % 2 == 0) {
    config = std::make_unique<v1::AgentConfig>();
  } else {
    config = std::make_unique<v1::ServerConfig>();
  }
  // (Debian's Abseil has its own string_view, not std's.)
  std::vector<std::string> parts =
      absl::StrSplit(absl::string_view(input.data() + 1, input.size() - 1), '\0');
  if (auto s = config::ParseJson(parts[0], config.get()); !s.ok()) {
    Require(!s.message().empty(), "a refused config file says why");
    return s;
  }
  // The rest: EDGEFLEET_NAME=value parts are the environment, anything else a command-line
  // argument. The loader must not be sent to read files.
  std::map<std::string, std::string> env;
  std::vector<std::string> args;
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    if (absl::StartsWith(part, "EDGEFLEET_") && part.find('=') != std::string::npos) {
      const size_t eq = part.find('=');
      if (part.substr(0, eq) != "EDGEFLEET_CONFIG") env[part.substr(0, eq)] = part.substr(eq + 1);
    } else if (!absl::StartsWith(part, "--config")) {
      args.push_back(part);
    }
  }
  const config::EnvLookup lookup = [&](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  absl::Status loaded = config::Load(args, lookup, config.get());
  Require(loaded.ok() || !loaded.message().empty(), "a refused setting says why");
  // --help prints every field with its value; it must cope with whatever was loaded.
  (void)config::Usage(*config);
  return loaded;
}

}  // namespace edgefleet::fuzz
