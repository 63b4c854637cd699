// The size limits on everything a client sends, admin or device, in one place: every string,
// bytes, map and repeated field of a request is checked against them by walking the message, so
// a field added to the proto is bounded without anyone remembering to bound it.
#pragma once

#include <google/protobuf/message.h>

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"

namespace edgefleet::server {

struct RequestLimits {
  // Defaults for fields without an entry of their own below.
  static constexpr size_t kTextBytes = 256;   // names, versions, ids, inventory strings
  static constexpr size_t kBytesBytes = 64;   // digests (SHA-256 is 32)
  static constexpr size_t kListEntries = 64;  // repeated fields
  static constexpr size_t kMapEntries = 64;   // label maps
  // Fields with their own limit.
  static constexpr size_t kDescriptionBytes = 1024;
  static constexpr size_t kDetailBytes = 1024;  // failure details from devices
  static constexpr size_t kSelectorBytes = 4096;
  static constexpr size_t kCsrBytes = 16 * 1024;
  static constexpr size_t kUploadChunkBytes = 1024 * 1024;  // PushModel chunks
  static constexpr size_t kTensorDims = 16;
  static constexpr size_t kInventoryModels = 256;
  static constexpr size_t kEventsPerReport = 1000;
  static constexpr size_t kTelemetryEntriesPerUpload = 1000;
  // The gRPC servers' maximum received message: every request within the limits above fits
  // (tests/server/api/request_limits_test.cpp builds the largest ones).
  static constexpr int kMaxDeviceMessageBytes = 4 * 1024 * 1024;
  static constexpr int kMaxAdminMessageBytes = 2 * 1024 * 1024;
};

// The limit of one field (its full proto name, e.g. "edgefleet.v1.Inventory.os"): bytes for a
// string or bytes field, entries for a map or repeated one.
size_t FieldLimit(const google::protobuf::FieldDescriptor& field);

// InvalidArgument naming the field (path from the request, e.g. "inventory.models[3].detail")
// and its limit when a field of `request` or of a message inside it exceeds its limit, or when a
// string field holds a NUL byte (PostgreSQL would silently cut the text there).
absl::Status CheckRequestLimits(const google::protobuf::Message& request);

}  // namespace edgefleet::server
