#include "agent/capture/capture_uploader.h"

#include <ctime>

#include "common/capture/capture_spec.h"
#include "common/core/logging.h"
#include "edgefleet/v1/capture.pb.h"

namespace edgefleet::agent {

int SystemLocalHour(Clock::TimePoint t) {
  const std::time_t seconds = static_cast<std::time_t>(ToUnixSeconds(t));
  std::tm local{};
  if (::localtime_r(&seconds, &local) == nullptr) return 0;
  return local.tm_hour;
}

absl::StatusOr<CaptureUploader::FlushResult> CaptureUploader::Flush(size_t max_items) {
  FlushResult result;
  auto items = state_.Peek(StateStore::OutboxKind::kCapture, max_items);
  if (!items.ok()) return items.status();
  if (items->empty()) return result;
  auto stream = state_.OutboxStreamId();
  if (!stream.ok()) return stream.status();
  const int hour = local_hour_(clock_.Now());
  for (const StateStore::OutboxItem& item : *items) {
    v1::CaptureRecord record;
    if (!record.ParseFromString(item.payload)) {
      // Written by this agent; unreadable means damaged: it can never be sent.
      Logger("capture")->error("dropping an unreadable captured request id={}", item.id);
      if (auto s = state_.Ack({item.id}); !s.ok()) return s;
      ++result.refused;
      continue;
    }
    if (!capture::InUploadWindow(record.upload_start_hour(), record.upload_end_hour(), hour)) {
      ++result.outside_window;
      continue;
    }
    if (!idle_()) {
      result.busy = true;
      break;
    }
    v1::UploadCaptureRequest request;
    request.set_stream_id(*stream);
    v1::CaptureUpload* upload = request.add_captures();
    upload->set_sequence(static_cast<uint64_t>(item.id));
    upload->set_record(item.payload);
    auto response = transport_.UploadCapture(request);
    if (!response.ok()) return response.status();
    for (uint64_t sequence : response->accepted_sequences()) {
      if (sequence == static_cast<uint64_t>(item.id)) ++result.accepted;
    }
    for (const v1::CaptureRejection& rejected : response->rejected()) {
      if (rejected.sequence() != static_cast<uint64_t>(item.id)) continue;
      ++result.refused;
      Logger("capture")->warn("the server refused a captured request model={} version={}: {}",
                              EscapeForLog(record.model_name()), EscapeForLog(record.version()),
                              EscapeForLog(rejected.reason()));
    }
    // Answered either way: the server keeps it, or keeping it cannot help.
    if (auto s = state_.Ack({item.id}); !s.ok()) return s;
  }
  return result;
}

}  // namespace edgefleet::agent
