#include "server/telemetry/rollups.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/telemetry/telemetry_codec.h"

namespace edgefleet::server::telemetry {
namespace {

constexpr int64_t kBucketSeconds = kRollupBucket.count();

uint64_t BinCount(const v1::FeatureWindow& w) {
  uint64_t n = 0;
  for (uint64_t b : w.bins()) n += b;
  return n;
}

bool HasHistograms(const MergedTelemetry& m) {
  return !m.features.empty() || m.outputs.bins_size() > 0;
}

bool SameShape(const v1::FeatureWindow& a, const v1::FeatureWindow& b) {
  return a.bins_size() == b.bins_size();
}

// Adds the feature and output histograms of one window (or merge) to `into`; false when their
// shape differs from what `into` holds.
bool AddHistograms(MergedTelemetry& into,
                   const google::protobuf::RepeatedPtrField<v1::FeatureWindow>& features,
                   const v1::FeatureWindow& outputs) {
  if (features.empty() && outputs.bins_size() == 0) return true;
  if (!HasHistograms(into)) {
    into.features.assign(features.begin(), features.end());
    into.outputs = outputs;
    return true;
  }
  if (static_cast<size_t>(features.size()) != into.features.size() ||
      !SameShape(into.outputs, outputs)) {
    return false;
  }
  for (size_t i = 0; i < into.features.size(); ++i) {
    if (!SameShape(into.features[i], features[static_cast<int>(i)])) return false;
  }
  for (size_t i = 0; i < into.features.size(); ++i) {
    MergeFeatureWindow(into.features[i], features[static_cast<int>(i)]);
  }
  MergeFeatureWindow(into.outputs, outputs);
  return true;
}

}  // namespace

int64_t BucketStart(int64_t unix_seconds) {
  int64_t q = unix_seconds / kBucketSeconds;
  if (unix_seconds % kBucketSeconds < 0) --q;
  return q * kBucketSeconds;
}

uint64_t MergedTelemetry::error_count() const {
  uint64_t n = 0;
  for (const auto& [reason, count] : errors) n += count;
  return n;
}

bool MergeFeatureWindow(v1::FeatureWindow& into, const v1::FeatureWindow& from) {
  if (into.bins_size() == 0 && BinCount(into) == 0 && into.nan_count() == 0) {
    into = from;
    return true;
  }
  if (into.bins_size() != from.bins_size()) return false;
  const bool into_has_values = BinCount(into) > 0;
  const bool from_has_values = BinCount(from) > 0;
  for (int i = 0; i < into.bins_size(); ++i) into.set_bins(i, into.bins(i) + from.bins(i));
  into.set_nan_count(into.nan_count() + from.nan_count());
  if (from_has_values) {
    into.set_min(into_has_values ? std::min(into.min(), from.min()) : from.min());
    into.set_max(into_has_values ? std::max(into.max(), from.max()) : from.max());
    into.set_sum(into.sum() + from.sum());
  }
  return true;
}

void AddWindow(MergedTelemetry& into, const v1::TelemetryWindow& window, uint64_t windows) {
  if (into.windows == 0) into.profile_sha256 = window.profile_sha256();
  into.windows += windows;
  into.requests += window.request_count();
  for (const v1::PredictErrorCount& e : window.errors()) into.errors[e.reason()] += e.count();
  bool whole = true;
  if (window.has_latency()) {
    // Stored windows were checked at ingest; a sketch that does not decode is left out.
    absl::StatusOr<edgefleet::telemetry::LatencySketch> sketch =
        edgefleet::telemetry::FromProto(window.latency());
    if (sketch.ok()) {
      into.latency.Merge(*sketch);
    } else {
      whole = false;
    }
  }
  if (!AddHistograms(into, window.features(), window.outputs())) whole = false;
  if (!whole) into.windows_partly_merged += windows;
}

void Merge(MergedTelemetry& into, const MergedTelemetry& from) {
  if (from.windows == 0) return;
  if (into.windows == 0) into.profile_sha256 = from.profile_sha256;
  into.windows += from.windows;
  into.requests += from.requests;
  for (const auto& [reason, count] : from.errors) into.errors[reason] += count;
  into.latency.Merge(from.latency);
  into.windows_partly_merged += from.windows_partly_merged;
  google::protobuf::RepeatedPtrField<v1::FeatureWindow> features(from.features.begin(),
                                                                 from.features.end());
  if (!AddHistograms(into, features, from.outputs)) {
    into.windows_partly_merged += from.windows - from.windows_partly_merged;
  }
}

v1::TelemetryWindow ToWindow(const MergedTelemetry& merged) {
  v1::TelemetryWindow w;
  w.set_request_count(merged.requests);
  for (const auto& [reason, count] : merged.errors) {
    if (count == 0) continue;
    v1::PredictErrorCount* e = w.add_errors();
    e->set_reason(reason);
    e->set_count(count);
  }
  if (!merged.latency.empty()) *w.mutable_latency() = edgefleet::telemetry::ToProto(merged.latency);
  for (const v1::FeatureWindow& f : merged.features) *w.add_features() = f;
  if (merged.outputs.bins_size() > 0) *w.mutable_outputs() = merged.outputs;
  w.set_profile_sha256(merged.profile_sha256);
  return w;
}

MergedTelemetry MergeProfiles(const std::vector<MergedTelemetry>& by_profile) {
  MergedTelemetry all;
  if (by_profile.size() == 1) return by_profile.front();
  for (const MergedTelemetry& m : by_profile) {
    all.windows += m.windows;
    all.requests += m.requests;
    for (const auto& [reason, count] : m.errors) all.errors[reason] += count;
    all.latency.Merge(m.latency);
    all.windows_partly_merged += m.windows_partly_merged;
  }
  return all;
}

namespace {

// Adds a stored roll-up row to the entry of its profile in `by_profile`.
absl::Status AddRow(const RollupRow& row, std::vector<MergedTelemetry>& by_profile) {
  v1::TelemetryWindow summary;
  if (!summary.ParseFromString(row.summary)) {
    return absl::DataLossError(absl::StrCat("a telemetry roll-up of ", row.model_name, " ",
                                            row.version, " does not parse"));
  }
  auto it = std::find_if(by_profile.begin(), by_profile.end(), [&](const MergedTelemetry& m) {
    return m.profile_sha256 == row.profile_sha256;
  });
  if (it == by_profile.end()) {
    it = by_profile.emplace(by_profile.end());
    it->profile_sha256 = row.profile_sha256;
  }
  summary.set_profile_sha256(row.profile_sha256);
  AddWindow(*it, summary, row.windows);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<MergedTelemetry>> DatabaseRollupStore::MergeRange(
    Tx& tx, const std::string& model, const std::string& version, std::optional<std::string> hw,
    Clock::TimePoint from, Clock::TimePoint to) {
  const int64_t from_unix = BucketStart(ToUnixSeconds(from));
  const int64_t to_unix = BucketStart(ToUnixSeconds(to) + kBucketSeconds - 1);
  auto rows = repo_.ReadRollups(tx, model, version, hw, from_unix, to_unix);
  if (!rows.ok()) return rows.status();
  std::vector<MergedTelemetry> by_profile;
  for (const RollupRow& row : *rows) {
    if (absl::Status s = AddRow(row, by_profile); !s.ok()) return s;
  }
  return by_profile;
}

absl::StatusOr<std::vector<TelemetryPoint>> DatabaseRollupStore::MergeSeries(
    Tx& tx, const std::string& model, const std::string& version, std::optional<std::string> hw,
    Clock::TimePoint from, Clock::TimePoint to, std::chrono::seconds step) {
  if (step < kRollupBucket || step.count() % kBucketSeconds != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("step must be a whole number of minutes, not ", step.count(), "s"));
  }
  const int64_t from_unix = BucketStart(ToUnixSeconds(from));
  const int64_t to_unix = ToUnixSeconds(to);
  if (to_unix <= from_unix) return std::vector<TelemetryPoint>{};
  const int64_t points = (to_unix - from_unix + step.count() - 1) / step.count();
  auto rows =
      repo_.ReadRollups(tx, model, version, hw, from_unix, from_unix + points * step.count());
  if (!rows.ok()) return rows.status();
  std::vector<TelemetryPoint> series(static_cast<size_t>(points));
  for (int64_t i = 0; i < points; ++i) {
    series[static_cast<size_t>(i)].start = FromUnixSeconds(from_unix + i * step.count());
  }
  for (const RollupRow& row : *rows) {
    const auto i = static_cast<size_t>((row.bucket_start_unix - from_unix) / step.count());
    if (absl::Status s = AddRow(row, series[i].by_profile); !s.ok()) return s;
  }
  return series;
}

absl::StatusOr<std::vector<DevicesReporting>> DatabaseRollupStore::CountDevicesReporting(
    Tx& tx, Clock::TimePoint since) {
  return repo_.CountDevicesReporting(tx, ToUnixSeconds(since));
}

}  // namespace edgefleet::server::telemetry
