// Rendering of edgefleetctl results: aligned text tables for people (text_output.h), protobuf JSON
// for scripts.
#pragma once

#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/output_format.h"
#include "cli/text_output.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"

namespace edgefleet::cli {

// The protobuf JSON mapping of `message`, indented, with default-valued fields included.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

// RFC 3339 UTC, or "-" when unset.
std::string FormatTimestamp(const google::protobuf::Timestamp& ts);

// "DEVICE_STATUS_ACTIVE" -> "ACTIVE": drops the enum's type prefix (everything up to the
// `prefix_words`-th underscore).
std::string ShortEnumName(const std::string& full_name, int prefix_words);

}  // namespace edgefleet::cli
