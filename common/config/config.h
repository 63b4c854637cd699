// Process configuration from a JSON file, EDGEFLEET_* environment variables and --flags,
// all driven by the fields of one edgefleet.v1 config message (later sources win).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "google/protobuf/message.h"

namespace edgefleet::config {

// Looks up an environment variable; injected so tests need not touch the real environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup ProcessEnv();

// Fills `config` in order: the JSON file named by --config (or EDGEFLEET_CONFIG), then
// EDGEFLEET_<FIELD_NAME> variables, then --field-name=value / --field-name value flags.
// Unknown flags, unparsable numbers and unreadable files are InvalidArgument.
// `args` excludes the program name.
absl::Status Load(const std::vector<std::string>& args, const EnvLookup& env,
                  google::protobuf::Message* config);

// Fills `config` from a config file's text (the message's protobuf JSON mapping); unknown fields
// and malformed JSON are InvalidArgument. Load() reads --config files with it.
absl::Status ParseJson(const std::string& json, google::protobuf::Message* config);

// Two lines per field: "--field-name (EDGEFLEET_FIELD_NAME)", then its description (the
// field's `help` option in config.proto) and, when `defaults` sets it, "(default: VALUE)".
// Pass the binary's defaults (WithDefaults of an empty config): they stay in one place.
std::string Usage(const google::protobuf::Message& defaults);

}  // namespace edgefleet::config
