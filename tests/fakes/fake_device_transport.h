// An in-memory DeviceTransport for agent tests: serves artifacts from memory and can behave like a
// hostile or flaky server (corrupt, truncate, pad, drop the stream), recording every call.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/update/device_transport.h"

namespace edgefleet::fakes {

class FakeDeviceTransport : public agent::DeviceTransport {
 public:
  // How one artifact is misserved; the default serves it faithfully.
  struct Behavior {
    std::optional<uint64_t> corrupt_byte;  // this byte is XORed with 0xFF
    std::optional<uint64_t> truncate_to;   // the stream ends cleanly after this many bytes
    std::string extra_bytes;               // appended after the real bytes
    // The stream fails (Unavailable) once it has delivered up to this absolute offset; one-shot,
    // so the next fetch succeeds (a dropped connection).
    std::optional<uint64_t> fail_after_bytes;

    static Behavior CorruptByte(uint64_t index) {
      Behavior b;
      b.corrupt_byte = index;
      return b;
    }
    static Behavior TruncateTo(uint64_t size) {
      Behavior b;
      b.truncate_to = size;
      return b;
    }
    static Behavior AppendBytes(std::string extra) {
      Behavior b;
      b.extra_bytes = std::move(extra);
      return b;
    }
    static Behavior FailAfterBytes(uint64_t offset) {
      Behavior b;
      b.fail_after_bytes = offset;
      return b;
    }
  };

  struct FetchCall {
    std::string sha256;  // raw
    uint64_t offset = 0;
  };

  // Serves `bytes` under their SHA-256; returns the raw digest.
  std::string AddArtifact(const std::string& bytes);
  // Serves `bytes` under `sha256` (raw), which need not be their digest.
  void AddArtifactAs(const std::string& sha256, const std::string& bytes);
  void SetBehavior(const std::string& sha256, const Behavior& behavior);
  void SetChunkSize(size_t bytes);
  // While failing, ReportEvents returns Unavailable and records nothing.
  void SetReportEventsFailing(bool failing);
  // How UploadTelemetry answers: normally it records the request and accepts every window.
  enum class TelemetryAnswer {
    kAccept,
    kUnavailable,  // records nothing: the server was unreachable
    kLoseAnswer,   // records the request, then fails as if the answer were lost on the way
  };
  void SetTelemetryAnswer(TelemetryAnswer answer);
  // Windows with these sequences are refused for good (as the server refuses malformed ones).
  void RefuseTelemetrySequences(std::set<uint64_t> sequences);
  void SetCheckInResponse(const v1::CheckInResponse& response);

  std::vector<FetchCall> Fetches() const;
  std::vector<v1::UpdateEvent> ReportedEvents() const;
  std::vector<v1::UploadTelemetryRequest> Telemetry() const;
  // Every call of any method, successful or not.
  int TotalCalls() const;

  absl::StatusOr<v1::CheckInResponse> CheckIn(const v1::CheckInRequest& request) override;
  absl::Status FetchArtifact(const std::string& sha256, uint64_t offset,
                             const std::function<absl::Status(std::string_view)>& sink) override;
  absl::Status ReportEvents(const v1::ReportEventRequest& request) override;
  absl::StatusOr<v1::UploadTelemetryResponse> UploadTelemetry(
      const v1::UploadTelemetryRequest& request) override;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::string> artifacts_;
  std::map<std::string, Behavior> behaviors_;
  size_t chunk_size_ = 97;  // odd, so chunk boundaries fall everywhere
  bool report_failing_ = false;
  TelemetryAnswer telemetry_answer_ = TelemetryAnswer::kAccept;
  std::set<uint64_t> refused_sequences_;
  v1::CheckInResponse check_in_response_;
  std::vector<FetchCall> fetches_;
  std::vector<v1::UpdateEvent> events_;
  std::vector<v1::UploadTelemetryRequest> telemetry_;
  int calls_ = 0;
};

}  // namespace edgefleet::fakes
