// The agent's side of TUF's key and freshness roles: the keyring built from the root pinned at
// enrollment and the delegations the server relays, the newest signed check-in timestamp, both
// kept across restarts, and the freeze alarm raised when no fresh timestamp came for too long.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/core/clock.h"
#include "common/crypto/signer.h"
#include "common/manifest/trust.h"
#include "common/metrics/metrics.h"
#include "edgefleet/v1/device.pb.h"
#include "edgefleet/v1/inference.pb.h"

namespace edgefleet::agent {

inline constexpr std::chrono::seconds kDefaultFreshnessLimit{24 * 3600};
// The newest timestamp is written to disk when it moved at least this much (or trust changed).
inline constexpr std::chrono::seconds kPersistTimestampEvery{60};
// A device clock further than this from the server's is logged (once) as wrong.
inline constexpr std::chrono::seconds kClockOffsetWorthWarning{300};
// Measured offsets that differ less than this from the one in force do not replace it.
inline constexpr std::chrono::seconds kClockOffsetNoise{3};

class ReleaseTrust {
 public:
  // Reads the state kept at `state_path` (a serialized ReleaseTrustState) or starts one there.
  // `registry` (may be null) receives the freshness metrics.
  static absl::StatusOr<std::unique_ptr<ReleaseTrust>> Open(
      std::shared_ptr<const crypto::Verifier> root, std::string state_path, const Clock& clock,
      std::chrono::seconds freshness_limit, metrics::Registry* registry = nullptr);

  // The keys manifests are verified with.
  const manifest::ReleaseKeyring& keys() const { return keys_; }

  // How the device forgets its rollback floors when the root orders it (a delegation raising
  // rollback_floor_epoch, after a release key that fast-forwarded metadata versions was revoked).
  // Until it succeeds the reset is tried again at every answer.
  void SetRollbackFloorReset(std::function<absl::Status()> reset);

  // Decides whether a check-in answer may be acted on: adopts its delegation when it is newer
  // (a rotation), then requires its timestamp to verify, bind the answer and be newer than any
  // seen. OK means act on it; the error (with a FailureReason) says why not. Either way the new
  // state is persisted before returning.
  absl::Status AcceptAnswer(const v1::CheckInResponse& response, const std::string& device_id);

  // Re-evaluates the freeze alarm (logged at warn when it starts and when it ends); returns
  // whether the agent is stale. The agent calls it after every check-in attempt.
  bool CheckFreshness();

  v1::ReleaseTrustStatus Status() const;

  // The time signed metadata is judged by: the device clock corrected by what the newest verified
  // check-in timestamp said the server's time was, so that a device whose clock is a day off
  // neither refuses fresh manifests as expired nor misses a freeze. Before any timestamp (first
  // contact) it is the device clock. The offset is kept across restarts. A device clock that
  // jumps by more than the answers' lifetime (a day) after the offset was measured makes answers
  // look expired (refused with EXPIRED, logged and counted) until it is set right.
  Clock::TimePoint TrustedNow() const;
  // TrustedNow() as a Clock, for the manifest checks of the updater.
  const Clock& trusted_clock() const { return trusted_clock_; }
  // Server time minus device clock as last measured (0 before any timestamp).
  std::chrono::seconds ClockOffset() const;

 private:
  class TrustedClock final : public Clock {
   public:
    explicit TrustedClock(const ReleaseTrust& trust) : trust_(trust) {}
    TimePoint Now() const override { return trust_.TrustedNow(); }

   private:
    const ReleaseTrust& trust_;
  };

  ReleaseTrust(std::shared_ptr<const crypto::Verifier> root, std::string state_path,
               const Clock& clock, std::chrono::seconds freshness_limit,
               metrics::Registry* registry);
  absl::Status Persist();
  // Runs the floor reset when the adopted epoch is ahead of the last one done; true when it ran.
  bool ResetRollbackFloorsIfOrdered();
  // The time freshness is measured from: the newest timestamp, else when trust began.
  Clock::TimePoint FreshAsOfLocked() const;
  bool StaleLocked() const;
  Clock::TimePoint TrustedNowLocked() const;
  // Learns the offset from a verified timestamp newer than any before (a replay of the newest
  // does not move it, so replays cannot hold the freshness age down); true when it moved.
  bool LearnOffsetLocked(Clock::TimePoint issued_at, Clock::TimePoint device_now);

  manifest::ReleaseKeyring keys_;
  const std::string state_path_;
  const Clock& clock_;
  const std::chrono::seconds freshness_limit_;

  mutable std::mutex mu_;
  std::optional<Clock::TimePoint> newest_timestamp_;
  std::optional<Clock::TimePoint> persisted_newest_;
  Clock::TimePoint trusted_since_;
  Clock::TimePoint::duration offset_{0};
  bool offset_known_ = false;
  bool offset_warned_ = false;
  TrustedClock trusted_clock_{*this};
  std::string last_refusal_;
  bool alarm_raised_ = false;
  std::function<absl::Status()> reset_floors_;
  uint64_t floors_reset_epoch_ = 0;

  metrics::Gauge* timestamp_age_ = nullptr;
  metrics::Gauge* stale_ = nullptr;
  metrics::Gauge* delegation_version_ = nullptr;
  metrics::Gauge* clock_offset_ = nullptr;
  metrics::Family<metrics::Counter>* refused_ = nullptr;
};

}  // namespace edgefleet::agent
