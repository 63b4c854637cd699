#include "server/telemetry/ingest.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/core/logging.h"

namespace edgefleet::server::telemetry {
namespace {

constexpr int64_t kDaySeconds = 24 * 3600;

int64_t DayOf(int64_t unix_seconds) {
  return unix_seconds >= 0 ? unix_seconds / kDaySeconds : (unix_seconds + 1) / kDaySeconds - 1;
}

}  // namespace

DropUpdate AdvanceDrops(const TelemetryStore::DropRecord& last, uint64_t stream_id,
                        const v1::DroppedTelemetryWindows& reported) {
  const bool same_stream = last.stream_id == stream_id;
  auto since = [&](uint64_t now, uint64_t before) {
    return same_stream && now >= before ? now - before : now;
  };
  DropUpdate u;
  u.increment.outbox_full = since(reported.outbox_full(), last.reported.outbox_full);
  u.increment.refused = since(reported.refused(), last.reported.refused);
  u.record.stream_id = stream_id;
  u.record.reported = {.outbox_full = reported.outbox_full(), .refused = reported.refused()};
  u.record.total = {.outbox_full = last.total.outbox_full + u.increment.outbox_full,
                    .refused = last.total.refused + u.increment.refused};
  return u;
}

TelemetryIngest::TelemetryIngest(Transactor& db, TelemetryStore& store, const Clock& clock,
                                 ServerMetrics& metrics, WindowCheckPolicy policy)
    : db_(db), store_(store), clock_(clock), metrics_(metrics), policy_(policy) {}

absl::Status TelemetryIngest::EnsureDay(Clock::TimePoint t) {
  const int64_t day = DayOf(ToUnixSeconds(t));
  {
    std::lock_guard lock(mu_);
    if (days_with_partition_.count(day) > 0) return absl::OkStatus();
  }
  // Its own transaction: creating a partition takes locks an upload should not hold.
  absl::Status s = db_.Transact("create telemetry partition", [&](Tx& tx) -> absl::Status {
    return store_.EnsurePartitions(tx, day * kDaySeconds, day * kDaySeconds).status();
  });
  if (!s.ok()) return s;
  std::lock_guard lock(mu_);
  days_with_partition_.insert(day);
  return absl::OkStatus();
}

absl::Status TelemetryIngest::Maintain() {
  const int64_t now = ToUnixSeconds(clock_.Now());
  const int64_t retention =
      std::chrono::duration_cast<std::chrono::seconds>(policy_.retention).count();
  int created = 0;
  int dropped = 0;
  absl::Status s = db_.Transact("maintain telemetry partitions", [&](Tx& tx) -> absl::Status {
    auto c = store_.EnsurePartitions(tx, now - retention, now + kDaySeconds);
    if (!c.ok()) return c.status();
    // The day a window may start on at the earliest keeps its partition.
    auto d = store_.DropPartitionsBefore(tx, now - retention);
    if (!d.ok()) return d.status();
    created = *c;
    dropped = *d;
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  std::lock_guard lock(mu_);
  days_with_partition_.clear();
  for (int64_t day = DayOf(now - retention); day <= DayOf(now + kDaySeconds); ++day) {
    days_with_partition_.insert(day);
  }
  if (created > 0 || dropped > 0) {
    Logger("telemetry")->info("telemetry partitions created={} dropped={}", created, dropped);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::UploadTelemetryResponse> TelemetryIngest::Ingest(
    const std::string& device_id, const v1::UploadTelemetryRequest& request) {
  v1::UploadTelemetryResponse response;
  const bool has_drops =
      request.dropped_windows().outbox_full() > 0 || request.dropped_windows().refused() > 0;
  if (request.windows().empty() && !has_drops) return response;
  if (request.stream_id() == 0) {
    return absl::InvalidArgumentError("stream_id is required with windows or dropped_windows");
  }
  const Clock::TimePoint now = clock_.Now();
  auto refuse = [&](uint64_t sequence, Refusal refusal, std::string reason) {
    auto* r = response.add_rejected();
    r->set_sequence(sequence);
    r->set_reason(std::move(reason));
    metrics_.telemetry_windows.Add({{"result", RefusalName(refusal)}}).Increment();
  };

  std::vector<const v1::TelemetryWindow*> checked;
  for (const v1::TelemetryWindow& w : request.windows()) {
    WindowVerdict verdict = CheckWindow(w, now, policy_);
    if (!verdict.ok) {
      refuse(w.sequence(), verdict.refusal, std::move(verdict.reason));
      continue;
    }
    if (auto s = EnsureDay(FromUnixSeconds(w.window_start().seconds())); !s.ok()) return s;
    checked.push_back(&w);
  }
  if (checked.empty() && !has_drops) return response;

  int stored = 0;
  int duplicates = 0;
  TelemetryStore::DropCounts dropped;
  std::vector<std::pair<uint64_t, std::string>> unknown;  // refused inside the transaction
  absl::Status s = db_.Transact("store telemetry windows", [&](Tx& tx) -> absl::Status {
    // A retried transaction starts over: nothing from the failed attempt is kept.
    stored = duplicates = 0;
    dropped = {};
    unknown.clear();
    response.clear_accepted_sequences();
    if (has_drops) {
      auto last = store_.LockDrops(tx, device_id);
      if (!last.ok()) return last.status();
      DropUpdate update = AdvanceDrops(*last, request.stream_id(), request.dropped_windows());
      if (auto s = store_.SaveDrops(tx, device_id, update.record); !s.ok()) return s;
      dropped = update.increment;
    }
    if (checked.empty()) return absl::OkStatus();
    auto context = store_.ReadDeviceContext(tx, device_id);
    if (!context.ok()) return context.status();
    std::map<std::pair<std::string, std::string>, bool> known_versions;
    std::vector<const v1::TelemetryWindow*> known_windows;
    for (const v1::TelemetryWindow* w : checked) {
      if (context->model_names.count(w->model_name()) == 0) {
        unknown.emplace_back(w->sequence(),
                             absl::StrCat("device does not run model '", w->model_name(), "'"));
        continue;
      }
      auto key = std::make_pair(w->model_name(), w->version());
      auto known = known_versions.find(key);
      if (known == known_versions.end()) {
        bool cached;
        {
          std::lock_guard lock(mu_);
          cached = known_versions_.count(key) > 0;
        }
        bool exists = cached;
        if (!cached) {
          auto found = store_.VersionExists(tx, w->model_name(), w->version());
          if (!found.ok()) return found.status();
          exists = *found;
          if (exists) {
            std::lock_guard lock(mu_);
            known_versions_.insert(key);
          }
        }
        known = known_versions.emplace(key, exists).first;
      }
      if (!known->second) {
        unknown.emplace_back(w->sequence(), absl::StrCat("model '", w->model_name(),
                                                         "' has no version '", w->version(), "'"));
        continue;
      }
      known_windows.push_back(w);
    }
    auto inserted = store_.InsertWindows(tx, device_id, request.stream_id(), known_windows,
                                         context->hw, ToUnixSeconds(now));
    if (!inserted.ok()) return inserted.status();
    for (size_t i = 0; i < known_windows.size(); ++i) {
      ++((*inserted)[i] ? stored : duplicates);
      response.add_accepted_sequences(known_windows[i]->sequence());
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  for (auto& [sequence, reason] : unknown)
    refuse(sequence, Refusal::kUnknownModel, std::move(reason));
  metrics_.telemetry_windows.Add({{"result", "stored"}}).Increment(stored);
  metrics_.telemetry_windows.Add({{"result", "duplicate"}}).Increment(duplicates);
  metrics_.telemetry_windows_dropped.Add({{"reason", "outbox_full"}})
      .Increment(static_cast<double>(dropped.outbox_full));
  metrics_.telemetry_windows_dropped.Add({{"reason", "refused"}})
      .Increment(static_cast<double>(dropped.refused));
  return response;
}

}  // namespace edgefleet::server::telemetry
