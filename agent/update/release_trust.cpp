#include "agent/update/release_trust.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/core/files.h"
#include "common/core/logging.h"
#include "common/manifest/verification.h"

namespace edgefleet::agent {
namespace {

google::protobuf::Timestamp ToProto(Clock::TimePoint t) {
  google::protobuf::Timestamp out;
  out.set_seconds(ToUnixSeconds(t));
  return out;
}

}  // namespace

ReleaseTrust::ReleaseTrust(std::shared_ptr<const crypto::Verifier> root, std::string state_path,
                           const Clock& clock, std::chrono::seconds freshness_limit,
                           metrics::Registry* registry)
    : keys_(std::move(root)),
      state_path_(std::move(state_path)),
      clock_(clock),
      freshness_limit_(freshness_limit.count() > 0 ? freshness_limit : kDefaultFreshnessLimit),
      trusted_since_(clock.Now()) {
  if (registry != nullptr) {
    timestamp_age_ = &registry
                          ->AddGauge("edgefleet_agent_release_timestamp_age_seconds",
                                     "Age of the newest verified signed check-in timestamp.")
                          .Add({});
    stale_ = &registry
                  ->AddGauge("edgefleet_agent_release_metadata_stale",
                             "1 when no fresh signed timestamp came within the freshness limit "
                             "(possible freeze attack).")
                  .Add({});
    delegation_version_ = &registry
                               ->AddGauge("edgefleet_agent_release_delegation_version",
                                          "Version of the root's release key delegation in force.")
                               .Add({});
    clock_offset_ = &registry
                         ->AddGauge("edgefleet_agent_clock_offset_seconds",
                                    "Server time minus this device's clock, measured from the "
                                    "newest signed check-in timestamp (positive: the device is "
                                    "behind).")
                         .Add({});
    refused_ = &registry->AddCounter("edgefleet_agent_check_in_answers_refused_total",
                                     "Check-in answers not acted on, by failure reason.");
  }
}

absl::StatusOr<std::unique_ptr<ReleaseTrust>> ReleaseTrust::Open(
    std::shared_ptr<const crypto::Verifier> root, std::string state_path, const Clock& clock,
    std::chrono::seconds freshness_limit, metrics::Registry* registry) {
  std::unique_ptr<ReleaseTrust> trust(
      new ReleaseTrust(std::move(root), std::move(state_path), clock, freshness_limit, registry));
  std::error_code ec;
  if (!std::filesystem::exists(trust->state_path_, ec)) {
    if (auto s = trust->Persist(); !s.ok()) return s;
  } else {
    auto bytes = ReadFile(trust->state_path_);
    if (!bytes.ok()) return bytes.status();
    v1::ReleaseTrustState state;
    if (!state.ParseFromString(*bytes)) {
      // Refusing to start is safer than forgetting the version floor and the revocations.
      return absl::DataLossError(absl::StrCat(trust->state_path_, " is damaged"));
    }
    if (absl::Status s = trust->keys_.Restore(state); !s.ok()) {
      Logger("trust")->warn("kept delegation no longer verifies, waiting for the server's: {}",
                            s.ToString());
    }
    if (state.has_newest_timestamp()) {
      trust->newest_timestamp_ = FromUnixSeconds(state.newest_timestamp().seconds());
      trust->persisted_newest_ = trust->newest_timestamp_;
    }
    if (state.clock_offset_measured()) {
      trust->offset_ = std::chrono::seconds(state.clock_offset_seconds());
      trust->offset_known_ = true;
    }
    if (state.has_trusted_since()) {
      trust->trusted_since_ = FromUnixSeconds(state.trusted_since().seconds());
    }
    trust->floors_reset_epoch_ = state.rollback_floors_reset_epoch();
  }
  trust->CheckFreshness();
  return trust;
}

absl::Status ReleaseTrust::Persist() {
  v1::ReleaseTrustState state = keys_.Snapshot();
  std::optional<Clock::TimePoint> newest;
  {
    std::lock_guard lock(mu_);
    newest = newest_timestamp_;
    if (newest) *state.mutable_newest_timestamp() = ToProto(*newest);
    *state.mutable_trusted_since() = ToProto(trusted_since_);
    state.set_rollback_floors_reset_epoch(floors_reset_epoch_);
    if (offset_known_) {
      state.set_clock_offset_measured(true);
      state.set_clock_offset_seconds(
          std::chrono::duration_cast<std::chrono::seconds>(offset_).count());
    }
  }
  absl::Status written = WriteFileAtomically(state_path_, state.SerializeAsString(), false);
  if (written.ok()) {
    std::lock_guard lock(mu_);
    persisted_newest_ = newest;
  }
  return written;
}

absl::Status ReleaseTrust::AcceptAnswer(const v1::CheckInResponse& response,
                                        const std::string& device_id) {
  auto log = Logger("trust");
  const auto now = clock_.Now();
  const auto trusted_before = TrustedNow();
  const uint64_t version_before = keys_.highest_version();
  if (response.has_delegation()) {
    // A delegation that is not newer is not adopted; the answer may still be signed by the key
    // already in force, so this alone refuses nothing.
    if (absl::Status s = keys_.Adopt(response.delegation(), trusted_before); !s.ok()) {
      log->warn("delegation from the server not adopted: {}", s.ToString());
    }
  }
  if (keys_.highest_version() != version_before) {
    auto d = keys_.delegation();
    log->info("release key delegation adopted version={} key_id={} revoked={}",
              keys_.highest_version(), d ? d->key_id() : "", d ? d->revoked_key_ids_size() : 0);
  }

  const bool floors_reset = ResetRollbackFloorsIfOrdered();

  std::optional<Clock::TimePoint> newest;
  Clock::TimePoint trusted_now;
  bool offset_moved = false;
  {
    std::lock_guard lock(mu_);
    newest = newest_timestamp_;
    trusted_now = TrustedNowLocked();
  }
  if (!newest.has_value()) {
    // First contact: no signed time yet to judge the device clock by, and no freeze to detect.
    // The timestamp dates itself; its signature, binding and (from now on) order still count.
    if (auto t = manifest::DecodeCanonicalTimestamp(response.timestamp().canonical_timestamp());
        t.ok()) {
      trusted_now = FromUnixSeconds(t->issued_at().seconds());
    }
  }
  auto timestamp =
      manifest::VerifyTimestamp(response.timestamp(), keys_, device_id,
                                manifest::DesiredDigest(response.desired()), trusted_now, newest);
  {
    std::lock_guard lock(mu_);
    if (timestamp.ok()) {
      const Clock::TimePoint issued = FromUnixSeconds(timestamp->issued_at().seconds());
      if (!newest_timestamp_.has_value() || issued > *newest_timestamp_) {
        offset_moved = LearnOffsetLocked(issued, now);
      }
      newest_timestamp_ = issued;
    } else {
      last_refusal_ = std::string(timestamp.status().message());
    }
  }
  if (!timestamp.ok() && refused_ != nullptr) {
    refused_
        ->Add({{"reason", v1::FailureReason_Name(
                              FailureReasonOf(timestamp.status(), v1::FAILURE_REASON_SIGNATURE))}})
        .Increment();
  }
  // Each answer moves the newest timestamp; writing it at most once a minute spares the device's
  // flash, and a restart then accepts replays from at most that last minute.
  bool persist = keys_.highest_version() != version_before || floors_reset || offset_moved;
  {
    std::lock_guard lock(mu_);
    persist |= newest_timestamp_.has_value() &&
               (!persisted_newest_.has_value() ||
                *newest_timestamp_ - *persisted_newest_ >= kPersistTimestampEvery);
  }
  absl::Status persisted = persist ? Persist() : absl::OkStatus();
  CheckFreshness();
  if (!timestamp.ok()) {
    return VerificationError(
        FailureReasonOf(timestamp.status(), v1::FAILURE_REASON_SIGNATURE),
        absl::StrCat("check-in answer not acted on: ", timestamp.status().message()));
  }
  // An answer whose freshness cannot be remembered would let a replay through after a restart.
  return persisted;
}

void ReleaseTrust::SetRollbackFloorReset(std::function<absl::Status()> reset) {
  std::lock_guard lock(mu_);
  reset_floors_ = std::move(reset);
}

bool ReleaseTrust::ResetRollbackFloorsIfOrdered() {
  const uint64_t ordered = keys_.rollback_floor_epoch();
  std::lock_guard lock(mu_);
  if (ordered <= floors_reset_epoch_ || !reset_floors_) return false;
  // Forgetting the floors before recording the epoch: a crash in between forgets them again,
  // which changes nothing, while the other order could skip the reset.
  if (absl::Status s = reset_floors_(); !s.ok()) {
    Logger("trust")->error("cannot reset rollback floors for epoch {}: {}", ordered, s.ToString());
    return false;
  }
  Logger("trust")->warn(
      "rollback floors reset by the root (epoch {}): the next release of each model sets them "
      "again",
      ordered);
  floors_reset_epoch_ = ordered;
  return true;
}

Clock::TimePoint ReleaseTrust::FreshAsOfLocked() const {
  return newest_timestamp_.value_or(trusted_since_);
}

bool ReleaseTrust::StaleLocked() const {
  return TrustedNowLocked() - FreshAsOfLocked() > freshness_limit_;
}

Clock::TimePoint ReleaseTrust::TrustedNowLocked() const { return clock_.Now() + offset_; }

Clock::TimePoint ReleaseTrust::TrustedNow() const {
  std::lock_guard lock(mu_);
  return TrustedNowLocked();
}

std::chrono::seconds ReleaseTrust::ClockOffset() const {
  std::lock_guard lock(mu_);
  return std::chrono::duration_cast<std::chrono::seconds>(offset_);
}

bool ReleaseTrust::LearnOffsetLocked(Clock::TimePoint issued_at, Clock::TimePoint device_now) {
  // Timestamps carry whole seconds and answers take a while: a measurement within a few seconds
  // of the one in force is noise, and keeping the offset steady keeps telemetry windows ordered.
  const Clock::TimePoint::duration measured = issued_at - device_now;
  const Clock::TimePoint::duration change =
      measured > offset_ ? measured - offset_ : offset_ - measured;
  if (offset_known_ && change < kClockOffsetNoise) return false;
  offset_known_ = true;
  offset_ = measured;
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(offset_).count();
  const bool off =
      seconds > kClockOffsetWorthWarning.count() || -seconds > kClockOffsetWorthWarning.count();
  if (off && !offset_warned_) {
    Logger("trust")->warn(
        "device clock is {}s {} the server's; signed metadata is judged by the server's signed "
        "time, but fix the device clock (NTP) for logs and telemetry",
        seconds < 0 ? -seconds : seconds, seconds < 0 ? "ahead of" : "behind");
  } else if (!off && offset_warned_) {
    Logger("trust")->info("device clock agrees with the server's again offset={}s", seconds);
  }
  offset_warned_ = off;
  return true;
}

bool ReleaseTrust::CheckFreshness() {
  std::lock_guard lock(mu_);
  const bool stale = StaleLocked();
  const auto age =
      std::chrono::duration_cast<std::chrono::seconds>(TrustedNowLocked() - FreshAsOfLocked());
  if (stale && !alarm_raised_) {
    Logger("trust")->warn(
        "release metadata is stale: no fresh signed timestamp for {}s (limit {}s); the server is "
        "unreachable or this device is being frozen on old metadata. last_refusal={}",
        age.count(), freshness_limit_.count(), last_refusal_.empty() ? "-" : last_refusal_);
  } else if (!stale && alarm_raised_) {
    Logger("trust")->info("release metadata is fresh again age={}s", age.count());
  }
  alarm_raised_ = stale;
  if (timestamp_age_ != nullptr) {
    timestamp_age_->Set(static_cast<double>(age.count()));
    stale_->Set(stale ? 1 : 0);
    delegation_version_->Set(static_cast<double>(keys_.highest_version()));
    clock_offset_->Set(
        static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(offset_).count()));
  }
  return stale;
}

v1::ReleaseTrustStatus ReleaseTrust::Status() const {
  v1::ReleaseTrustStatus out;
  out.set_root_key_id(keys_.root_key_id());
  if (auto d = keys_.delegation()) {
    out.set_release_key_id(d->key_id());
    *out.mutable_delegation_expires_at() = d->expires_at();
  }
  out.set_delegation_version(keys_.highest_version());
  *out.mutable_revoked_key_ids() = keys_.Snapshot().revoked_key_ids();
  std::lock_guard lock(mu_);
  if (newest_timestamp_) *out.mutable_newest_timestamp() = ToProto(*newest_timestamp_);
  const auto age = TrustedNowLocked() - FreshAsOfLocked();
  out.set_timestamp_age_seconds(static_cast<uint64_t>(
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(age).count())));
  out.set_freshness_limit_seconds(static_cast<uint32_t>(freshness_limit_.count()));
  out.set_stale(StaleLocked());
  out.set_last_refusal(last_refusal_);
  out.set_clock_offset_seconds(std::chrono::duration_cast<std::chrono::seconds>(offset_).count());
  return out;
}

}  // namespace edgefleet::agent
