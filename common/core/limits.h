// The size limits on what clients send the server, in one place: the server refuses requests
// beyond them (server/api/request_limits.h walks every request against them), and the agent fits
// the text it reports within them so that its reports are never refused.
#pragma once

#include <cstddef>
#include <string>

namespace edgefleet {

struct RequestLimits {
  // Defaults for fields without an entry of their own below.
  static constexpr size_t kTextBytes = 256;   // names, versions, ids, inventory strings
  static constexpr size_t kBytesBytes = 64;   // digests (SHA-256 is 32)
  static constexpr size_t kListEntries = 64;  // repeated fields
  static constexpr size_t kMapEntries = 64;   // label maps
  // Fields with their own limit.
  static constexpr size_t kDescriptionBytes = 1024;
  static constexpr size_t kDetailBytes = 4096;  // failure details from devices
  static constexpr size_t kSelectorBytes = 4096;
  static constexpr size_t kPageTokenBytes = 1024;  // holds a key of up to kTextBytes
  static constexpr size_t kCsrBytes = 16 * 1024;
  static constexpr size_t kUploadChunkBytes = 1024 * 1024;  // PushModel chunks
  // FetchArtifact chunks the server sends: a device may ask for smaller ones, down to the minimum.
  static constexpr size_t kMinArtifactChunkBytes = 4 * 1024;
  static constexpr size_t kMaxArtifactChunkBytes = 256 * 1024;
  static constexpr size_t kTensorDims = 16;
  static constexpr size_t kInventoryModels = 256;
  static constexpr size_t kEventsPerReport = 500;  // agents send 100 at a time
  static constexpr size_t kTelemetryEntriesPerUpload = 1000;
  // Telemetry windows (edgefleet.v1.TelemetryWindow): agents send at most this many per call,
  // and the largest window (every feature and sketch full) fits that many to a message.
  static constexpr size_t kTelemetryWindowsPerUpload = 16;
  static constexpr size_t kTelemetryFeatures = 64;         // features watched per model version
  static constexpr size_t kTelemetryBins = 256;            // per feature or output histogram
  static constexpr size_t kTelemetrySketchBuckets = 2048;  // a latency sketch, 1 ns..10^6 s
  static constexpr size_t kRolloutWaves = 16;
  // Captured requests (edgefleet.v1.CaptureUpload): one per upload, its serialized record at most
  // this large (the server's max_capture_bytes may be lower; the agent captures nothing larger).
  static constexpr size_t kCapturesPerUpload = 1;
  static constexpr size_t kCaptureRecordBytes = 3 * 1024 * 1024 + 512 * 1024;
  // The gRPC servers' maximum received message: every request within the limits above fits
  // (tests/server/api/request_limits_test.cpp builds the largest ones).
  static constexpr int kMaxDeviceMessageBytes = 4 * 1024 * 1024;
  static constexpr int kMaxAdminMessageBytes = 2 * 1024 * 1024;
};

// `text` without NUL bytes and cut to at most `max_bytes` on a UTF-8 character boundary.
std::string FitText(std::string text, size_t max_bytes);

}  // namespace edgefleet
