// A wave's health gates: each PASS, FAIL or INCONCLUSIVE from the counts of the wave's devices.
// INCONCLUSIVE (too few devices have reported) makes the wave hold: it never passes and never
// fails a wave. Pure: the time is passed in.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "common/core/clock.h"
#include "edgefleet/v1/rollout.pb.h"
#include "server/rollout/wave_plan.h"

namespace edgefleet::server::rollout {

// Where one targeted device of a wave stands with the rollout's version.
enum class DeviceOutcome {
  kWaiting,          // targeted, not finished (pending, downloading, on probation ...)
  kServing,          // serving the version, probation passed
  kInstallFailed,    // failed to download, verify, load or warm it up
  kRefused,          // refused the release (signature, expiry, rollback, naming)
  kProbationFailed,  // swapped to it, failed probation, swapped back (PROBATION_FAILED)
  kRolledBack,       // sent back by a roll back, and serving its previous version again
};

struct DeviceProgress {
  DeviceOutcome outcome = DeviceOutcome::kWaiting;
  Clock::TimePoint targeted_at;
};

// The devices of one wave (the devices assigned to it, not those of earlier waves), by outcome.
struct WaveCounts {
  uint64_t targeted = 0;
  uint64_t serving = 0;
  uint64_t install_failed = 0;
  uint64_t refused = 0;
  uint64_t probation_failed = 0;
  // Waiting devices targeted at least the serving timeout ago.
  uint64_t timed_out = 0;
  uint64_t rolled_back = 0;  // only after a roll back, which ends the rollout: no gate reads it

  uint64_t finished() const {
    return serving + install_failed + refused + probation_failed + rolled_back;
  }
  uint64_t waiting() const { return targeted > finished() ? targeted - finished() : 0; }
  bool operator==(const WaveCounts&) const = default;
};

// Counts `devices` at `now`: a waiting device has timed out when now >= targeted_at + timeout.
// (A controller may count in SQL instead; this is the definition.)
WaveCounts TallyWave(const std::vector<DeviceProgress>& devices, Clock::TimePoint now,
                     std::chrono::seconds serving_timeout);

// The gates, in this order: install failures, probation failures, the probation failure count
// (only when a count limit is set), timeouts.
//  - install failures: (install_failed + refused) / finished, in percent;
//  - probation failures: probation_failed / finished, in percent; and its count;
//    both INCONCLUSIVE while finished < min(min_finished_devices, targeted - timed_out), and
//    while no device finished (a wave smaller than the minimum needs all its devices that have
//    not timed out);
//  - timeouts: timed_out / targeted, in percent. FAIL as soon as it is above its threshold;
//    PASS only when no device is still waiting within its time (so a wave whose gates all pass
//    has every device finished or timed out); INCONCLUSIVE otherwise.
// Every gate is INCONCLUSIVE for a wave with no targeted device. A value equal to its threshold
// passes.
std::vector<v1::GateResult> EvaluateGates(const GateThresholds& gates, const WaveCounts& counts);

// FAIL when any gate fails, else INCONCLUSIVE when any is, else PASS (also for no gates; a
// NOT_APPLICABLE gate counts as passing).
v1::GateOutcome Overall(const std::vector<v1::GateResult>& results);

// Fills the counts of `status` (targeted, serving, failed and its parts, in_progress, timed_out).
void SetCounts(const WaveCounts& counts, v1::WaveStatus* status);

}  // namespace edgefleet::server::rollout
