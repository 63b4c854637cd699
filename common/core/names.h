// The naming rule for model names and versions, shared by the server (which refuses a bad name
// at push) and the agent (which refuses a manifest naming one): both become directory names on
// devices and in URLs, so a name is never a path component with a meaning of its own.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace edgefleet {

// Model names: 1 to 63 of [a-z0-9._-], not starting with a dot (so never "." or "..").
absl::Status ValidateModelName(std::string_view name);
// Versions: 1 to 63 of [A-Za-z0-9._+-], not starting with a dot.
absl::Status ValidateVersion(std::string_view version);
// API token names (they appear in URLs too): the model-name rule, reported as "name".
absl::Status ValidateApiTokenName(std::string_view name);

}  // namespace edgefleet
