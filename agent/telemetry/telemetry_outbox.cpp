#include "agent/telemetry/telemetry_outbox.h"

#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/core/limits.h"
#include "common/core/logging.h"

namespace edgefleet::agent {

using OutboxKind = StateStore::OutboxKind;

absl::Status TelemetryOutbox::Enqueue(const v1::TelemetryWindow& window) {
  return state_.Enqueue(OutboxKind::kTelemetry, window.SerializeAsString());
}

absl::StatusOr<TelemetryOutbox::FlushResult> TelemetryOutbox::Flush() {
  FlushResult result;
  auto stream = state_.OutboxStreamId();
  if (!stream.ok()) return stream.status();
  while (true) {
    auto items = state_.Peek(OutboxKind::kTelemetry, RequestLimits::kTelemetryWindowsPerUpload);
    if (!items.ok()) return items.status();
    if (items->empty()) return result;
    v1::UploadTelemetryRequest request;
    request.set_stream_id(*stream);
    if (auto s = AttachDropCounts(request); !s.ok()) return s;
    std::vector<int64_t> unreadable;
    for (const auto& item : *items) {
      v1::TelemetryWindow* w = request.add_windows();
      if (!w->ParseFromString(item.payload)) {
        // Written by this agent, so only a damaged database gets here: no send can fix it.
        request.mutable_windows()->RemoveLast();
        unreadable.push_back(item.id);
        continue;
      }
      w->set_sequence(static_cast<uint64_t>(item.id));
    }
    std::vector<int64_t> done = unreadable;
    std::vector<int64_t> refused;
    if (request.windows_size() > 0) {
      auto answer = transport_.UploadTelemetry(request);
      if (!answer.ok()) return answer.status();
      // Only ids this upload carried: an answer naming others is not trusted to remove them.
      std::set<int64_t> sent;
      for (const auto& w : request.windows()) sent.insert(static_cast<int64_t>(w.sequence()));
      for (uint64_t s : answer->accepted_sequences()) {
        if (sent.erase(static_cast<int64_t>(s)) > 0) {
          done.push_back(static_cast<int64_t>(s));
          ++result.accepted;
        }
      }
      for (const auto& r : answer->rejected()) {
        if (sent.erase(static_cast<int64_t>(r.sequence())) == 0) continue;
        Logger("telemetry")
            ->warn("telemetry window refused by the server sequence={} reason={}", r.sequence(),
                   r.reason());
        refused.push_back(static_cast<int64_t>(r.sequence()));
        ++result.refused;
      }
      if (!sent.empty() && done.empty() && refused.empty()) {
        // The server answered for none of them: sending again would loop; try at the next flush.
        return absl::InternalError(absl::StrCat("the server answered for none of the ",
                                                request.windows_size(), " windows sent"));
      }
    }
    if (auto s = state_.Ack(done); !s.ok()) return s;
    // Counted as they leave the outbox: the next upload reports them.
    if (auto s = state_.AckRefused(OutboxKind::kTelemetry, refused); !s.ok()) return s;
  }
}

absl::Status TelemetryOutbox::AttachDropCounts(v1::UploadTelemetryRequest& request) {
  auto stats = state_.OutboxStats();
  if (!stats.ok()) return stats.status();
  const StateStore::OutboxKindStats& telemetry =
      (*stats)[static_cast<size_t>(OutboxKind::kTelemetry)];
  // Unset while nothing was lost: the common case costs the server nothing.
  if (telemetry.dropped == 0 && telemetry.refused == 0) return absl::OkStatus();
  request.mutable_dropped_windows()->set_outbox_full(telemetry.dropped);
  request.mutable_dropped_windows()->set_refused(telemetry.refused);
  return absl::OkStatus();
}

}  // namespace edgefleet::agent
