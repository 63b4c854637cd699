// Which devices a rollout's waves take: deterministic and stable. Devices are ordered by
// SHA-256(rollout key, device id), spread across the values of their `hw` label so that each
// hardware kind gets its share of every wave, and chosen incrementally: a wave adds devices to
// those earlier waves took, so adding a device never moves one already assigned. Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "edgefleet/v1/rollout.pb.h"
#include "server/rollout/wave_plan.h"

namespace edgefleet::server::rollout {

// The label whose values waves are spread across.
inline constexpr char kHardwareLabel[] = "hw";

// The first 8 bytes of SHA-256(rollout_key, 0x00, device_id), big-endian: a device's place in a
// rollout's order. Stable across processes, builds and platforms (unlike std::hash). Use the
// rollout's id (or its name when names are never reused) as `rollout_key`.
uint64_t MembershipRank(std::string_view rollout_key, std::string_view device_id);

struct MatchingDevice {
  std::string device_id;
  std::string hw;         // its `hw` label; empty when it has none (one group of its own)
  bool assigned = false;  // already in one of the rollout's waves
};

// The devices to add so that `target` devices are assigned in all (CumulativeTarget of the wave
// being started), in the order they were picked; empty when `target` are assigned already.
// Each pick goes to the hw group furthest below its proportional share of `target` (groups with
// no device assigned first, so every hw value appears as soon as the target allows), taking that
// group's unassigned device of lowest rank. Ties between groups go to the larger group, then the
// lower hw value. The answer does not depend on the order of `devices`. Device ids must be
// distinct.
std::vector<std::string> PickNewMembers(std::string_view rollout_key,
                                        const std::vector<MatchingDevice>& devices,
                                        uint64_t target);

// The wave a device that starts matching the selector after the rollout started joins: the
// current wave while RUNNING, the last wave once SUCCEEDED (so a late device still gets the
// version). None while PENDING (the first wave takes it when it starts), PAUSED (the controller
// assigns such devices when the rollout resumes: call this again then), ABORTED or ROLLED_BACK.
std::optional<size_t> WaveForLateDevice(v1::RolloutState state, size_t current_wave,
                                        size_t wave_count);

}  // namespace edgefleet::server::rollout
