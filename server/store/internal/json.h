// Conversions between store columns (jsonb, enum text, timestamptz) and domain types
// (adapter-internal header: include it only from server/store/*.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/core/labels.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/generated_enum_reflection.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"

namespace edgefleet::server::internal {

// A JSON object of string values, e.g. {"site":"berlin"}.
std::string LabelsToJson(const Labels& labels);
absl::StatusOr<Labels> LabelsFromJson(absl::string_view json);
// A JSON array of strings.
std::string StringsToJson(const std::vector<std::string>& values);
// A PostgreSQL array literal of text values, e.g. {"a","b\\\"c"}, for a $n::text[] parameter.
std::string TextArrayLiteral(const std::vector<std::string>& values);

// Protobuf JSON mapping with proto field names (so SQL can address e.g. inventory->'models').
std::string MessageToJson(const google::protobuf::Message& message);
absl::Status MessageFromJson(absl::string_view json, google::protobuf::Message* message);

// Enum values are stored as their lower-case name without the prefix:
// DEVICE_STATUS_ACTIVE -> "active".
std::string EnumToDb(const google::protobuf::EnumDescriptor* descriptor, int value,
                     absl::string_view prefix);
// Unknown text maps to 0 (the *_UNSPECIFIED value).
int EnumFromDb(const google::protobuf::EnumDescriptor* descriptor, absl::string_view text,
               absl::string_view prefix);

template <class E>
std::string ToDb(E value, absl::string_view prefix) {
  return EnumToDb(google::protobuf::GetEnumDescriptor<E>(), static_cast<int>(value), prefix);
}
template <class E>
E FromDb(absl::string_view text, absl::string_view prefix) {
  return static_cast<E>(EnumFromDb(google::protobuf::GetEnumDescriptor<E>(), text, prefix));
}

inline google::protobuf::Timestamp UnixToTimestamp(int64_t seconds) {
  google::protobuf::Timestamp t;
  t.set_seconds(seconds);
  return t;
}

}  // namespace edgefleet::server::internal
