// The size limits on everything a client sends, admin or device, in one place: every string,
// bytes, map and repeated field of a request is checked against them by walking the message, so
// a field added to the proto is bounded without anyone remembering to bound it.
#pragma once

#include <google/protobuf/message.h>

#include <cstddef>

#include "absl/status/status.h"
#include "common/core/limits.h"

namespace edgefleet::server {

// The limit of one field (its full proto name, e.g. "edgefleet.v1.Inventory.os"): bytes for a
// string or bytes field, entries for a map or repeated one.
size_t FieldLimit(const google::protobuf::FieldDescriptor& field);

// InvalidArgument naming the field (path from the request, e.g. "inventory.models[3].detail")
// and its limit when a field of `request` or of a message inside it exceeds its limit, or when a
// string field holds a NUL byte (PostgreSQL would silently cut the text there).
absl::Status CheckRequestLimits(const google::protobuf::Message& request);

}  // namespace edgefleet::server
