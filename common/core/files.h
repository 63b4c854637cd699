// Whole-file reads and crash-safe writes for small files (keys, certificates, configs).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace edgefleet {

// NotFound when the file does not exist or cannot be opened.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `data` to a temporary beside `path`, flushes it to disk and renames it into place, so
// readers see the old file or the new one, never half of it. `secret` makes it owner-only (0600).
absl::Status WriteFileAtomically(const std::string& path, const std::string& data, bool secret);

}  // namespace edgefleet
