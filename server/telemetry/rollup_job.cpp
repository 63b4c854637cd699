#include "server/telemetry/rollup_job.h"

#include <condition_variable>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/core/logging.h"

namespace edgefleet::server::telemetry {

std::string ErrorReasonLabel(v1::PredictErrorReason reason) {
  std::string name = v1::PredictErrorReason_Name(reason);
  constexpr absl::string_view kPrefix = "PREDICT_ERROR_REASON_";
  if (name.empty()) name = absl::StrCat(kPrefix, "UNSPECIFIED");  // a value this build lacks
  if (absl::StartsWith(name, kPrefix)) name = name.substr(kPrefix.size());
  return absl::AsciiStrToLower(name);
}

RollupJob::RollupJob(Transactor& db, RollupRepo& repo, RollupStore& store, const Clock& clock,
                     ServerMetrics& metrics, RollupJobOptions options)
    : db_(db), repo_(repo), store_(store), clock_(clock), metrics_(metrics), options_(options) {}

RollupJob::~RollupJob() { Stop(); }

void RollupJob::Start() {
  thread_ = std::jthread([this](std::stop_token stop) { Loop(stop); });
}

void RollupJob::Stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

void RollupJob::Loop(std::stop_token stop) {
  std::mutex mu;
  std::condition_variable_any wake;
  std::unique_lock lock(mu);
  while (!stop.stop_requested()) {
    if (auto r = RunUntilCaughtUp(); !r.ok()) {
      Logger("telemetry")
          ->warn("telemetry roll-up failed (retried next tick): {}", r.status().ToString());
    }
    bool due = false;
    {
      std::lock_guard guard(mu_);
      due = clock_.Now() - devices_refreshed_ >= options_.devices_reporting_refresh;
    }
    if (due) {
      if (auto s = RefreshDevicesReporting(); !s.ok()) {
        Logger("telemetry")->warn("devices reporting count failed: {}", s.ToString());
      }
    }
    wake.wait_for(lock, stop, options_.interval, [] { return false; });
  }
}

metrics::Labels RollupJob::LabelsOf(const Group& group) {
  metrics::Labels labels{{"model", std::get<0>(group)}, {"version", std::get<1>(group)}};
  // "" and an absent label are the same series to Prometheus: leave it out.
  if (!std::get<2>(group).empty()) labels["hw"] = std::get<2>(group);
  return labels;
}

absl::StatusOr<RollupRunResult> RollupJob::RunOnce() {
  RollupRunResult result;
  std::map<Group, MergedTelemetry> by_group;
  absl::Status s = db_.Transact("roll up telemetry windows", [&](Tx& tx) -> absl::Status {
    // A retried transaction starts over.
    result = RollupRunResult{};
    by_group.clear();
    auto claim = repo_.ClaimNewWindows(tx, options_.max_windows_per_run);
    if (!claim.ok()) return claim.status();
    if (!claim->has_value()) return absl::OkStatus();
    result.claimed = true;
    const WindowClaim& c = **claim;
    if (c.to_xid == c.from_xid) return absl::OkStatus();
    // (model, version, hw, profile, bucket) -> merged summaries.
    std::map<std::tuple<std::string, std::string, std::string, std::string, int64_t>,
             MergedTelemetry>
        buckets;
    for (const NewWindow& w : c.windows) {
      v1::TelemetryWindow window;
      if (!window.ParseFromString(w.summary)) {
        // Stored after parsing at ingest: cannot happen short of corruption. Skipping it keeps
        // every other window flowing.
        Logger("telemetry")
            ->error("telemetry window of {} {} does not parse; not rolled up", w.model_name,
                    w.version);
        continue;
      }
      AddWindow(buckets[{w.model_name, w.version, w.hw, window.profile_sha256(),
                         BucketStart(w.window_start_unix)}],
                window);
      ++result.windows;
    }
    std::vector<RollupRow> rows;
    rows.reserve(buckets.size());
    for (const auto& [key, merged] : buckets) {
      const auto& [model, version, hw, profile, bucket] = key;
      rows.push_back(RollupRow{.model_name = model,
                               .version = version,
                               .hw = hw,
                               .profile_sha256 = profile,
                               .bucket_start_unix = bucket,
                               .windows = merged.windows,
                               .requests = merged.requests,
                               .errors = merged.error_count(),
                               .summary = ToWindow(merged).SerializeAsString()});
      Merge(by_group[{model, version, hw}], merged);
    }
    result.rows = rows.size();
    return repo_.AppendRollups(tx, c, rows);
  });
  if (!s.ok()) return s;
  Export(by_group, result.windows);
  DropIdleSeries();
  return result;
}

absl::StatusOr<RollupRunResult> RollupJob::RunUntilCaughtUp() {
  RollupRunResult total;
  while (true) {
    auto r = RunOnce();
    if (!r.ok()) return r.status();
    total.claimed = total.claimed || r->claimed;
    total.windows += r->windows;
    total.rows += r->rows;
    if (!r->claimed || r->windows < options_.max_windows_per_run) return total;
  }
}

void RollupJob::Export(const std::map<Group, MergedTelemetry>& by_group, size_t windows) {
  metrics_.telemetry_rollup_windows.Add({}).Increment(static_cast<double>(windows));
  const std::vector<double> bounds = InferenceLatencyBuckets();
  const Clock::TimePoint now = clock_.Now();
  std::lock_guard lock(mu_);
  for (const auto& [group, merged] : by_group) {
    ExportedSeries& exported = exported_[group];
    exported.last_export = now;
    metrics::Labels labels = LabelsOf(group);
    metrics_.inference_requests.Add(labels).Increment(static_cast<double>(merged.requests));
    for (const auto& [reason, count] : merged.errors) {
      metrics::Labels with_reason = labels;
      with_reason["reason"] = ErrorReasonLabel(reason);
      exported.error_reasons.insert(with_reason["reason"]);
      metrics_.inference_errors.Add(with_reason).Increment(static_cast<double>(count));
    }
    // Classic buckets from the merged sketch: counts at or below each bound, made per bucket.
    std::vector<double> increments;
    increments.reserve(bounds.size() + 1);
    uint64_t below = 0;
    for (double bound : bounds) {
      const uint64_t at_or_below = merged.latency.CountAtOrBelow(bound);
      increments.push_back(static_cast<double>(at_or_below - below));
      below = at_or_below;
    }
    increments.push_back(static_cast<double>(merged.latency.count() - below));
    metrics_.inference_latency.Add(labels).ObserveMultiple(increments,
                                                           merged.latency.sum_seconds());
  }
}

void RollupJob::DropIdleSeries() {
  const Clock::TimePoint horizon = clock_.Now() - options_.idle_series_ttl;
  std::lock_guard lock(mu_);
  for (auto it = exported_.begin(); it != exported_.end();) {
    if (it->second.last_export >= horizon) {
      ++it;
      continue;
    }
    const metrics::Labels labels = LabelsOf(it->first);
    metrics_.inference_requests.Remove(labels);
    metrics_.inference_latency.Remove(labels);
    for (const std::string& reason : it->second.error_reasons) {
      metrics::Labels with_reason = labels;
      with_reason["reason"] = reason;
      metrics_.inference_errors.Remove(with_reason);
    }
    it = exported_.erase(it);
  }
}

absl::Status RollupJob::RefreshDevicesReporting() {
  const Clock::TimePoint now = clock_.Now();
  auto counts = db_.Transact("count devices reporting telemetry", [&](Tx& tx) {
    return store_.CountDevicesReporting(tx, now - options_.devices_reporting_window);
  });
  if (!counts.ok()) return counts.status();
  std::lock_guard lock(mu_);
  std::set<Group> seen;
  for (const DevicesReporting& d : *counts) {
    Group group{d.model_name, d.version, d.hw};
    metrics_.telemetry_devices_reporting.Add(LabelsOf(group)).Set(static_cast<double>(d.devices));
    seen.insert(group);
  }
  for (auto it = reporting_groups_.begin(); it != reporting_groups_.end();) {
    if (seen.count(*it) > 0) {
      ++it;
    } else if (exported_.count(*it) > 0) {
      metrics_.telemetry_devices_reporting.Add(LabelsOf(*it)).Set(0);
      ++it;
    } else {
      metrics_.telemetry_devices_reporting.Remove(LabelsOf(*it));
      it = reporting_groups_.erase(it);
    }
  }
  reporting_groups_.insert(seen.begin(), seen.end());
  devices_refreshed_ = now;
  return absl::OkStatus();
}

absl::Status RollupJob::Maintain() {
  const int64_t before =
      ToUnixSeconds(clock_.Now()) -
      std::chrono::duration_cast<std::chrono::seconds>(options_.retention).count();
  auto deleted = db_.Transact("delete expired telemetry roll-ups",
                              [&](Tx& tx) { return repo_.DeleteRollupsBefore(tx, before); });
  if (!deleted.ok()) return deleted.status();
  if (*deleted > 0) Logger("telemetry")->info("telemetry roll-ups deleted={}", *deleted);
  return absl::OkStatus();
}

}  // namespace edgefleet::server::telemetry
