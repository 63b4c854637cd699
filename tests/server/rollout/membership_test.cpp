// Wave membership properties: deterministic, independent of input order, stable when devices
// are added, spread across hw values, and late devices join the current wave.
#include "server/rollout/membership.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"

namespace edgefleet::server::rollout {
namespace {

std::vector<MatchingDevice> Fleet(const std::map<std::string, int>& per_hw) {
  std::vector<MatchingDevice> devices;
  for (const auto& [hw, n] : per_hw) {
    for (int i = 0; i < n; ++i) {
      devices.push_back({absl::StrCat(hw.empty() ? "plain" : hw, "-dev-", i), hw, false});
    }
  }
  return devices;
}

void MarkAssigned(std::vector<MatchingDevice>& devices, const std::vector<std::string>& ids) {
  std::set<std::string> set(ids.begin(), ids.end());
  for (MatchingDevice& d : devices) d.assigned |= set.count(d.device_id) > 0;
}

std::map<std::string, int> PerHw(const std::vector<MatchingDevice>& devices,
                                 const std::vector<std::string>& ids) {
  std::map<std::string, std::string> hw_of;
  for (const MatchingDevice& d : devices) hw_of[d.device_id] = d.hw;
  std::map<std::string, int> counts;
  for (const std::string& id : ids) ++counts[hw_of.at(id)];
  return counts;
}

// Runs waves in order, assigning each wave's new members; answers the members per wave.
std::vector<std::vector<std::string>> RunWaves(std::string_view key,
                                               std::vector<MatchingDevice> devices,
                                               const WavePlan& plan) {
  std::vector<std::vector<std::string>> waves;
  for (size_t w = 0; w < plan.waves.size(); ++w) {
    waves.push_back(PickNewMembers(key, devices, CumulativeTarget(plan, w, devices.size())));
    MarkAssigned(devices, waves.back());
  }
  return waves;
}

TEST(MembershipTest, TheRankIsAStableSha256OfRolloutAndDevice) {
  // Pinned: a change of hash would move every device of every rollout in flight.
  EXPECT_EQ(MembershipRank("r1", "dev-1"), MembershipRank("r1", "dev-1"));
  EXPECT_NE(MembershipRank("r1", "dev-1"), MembershipRank("r2", "dev-1"));
  EXPECT_NE(MembershipRank("ab", "c"), MembershipRank("a", "bc"));
  // SHA-256("r1\0dev-1") starts with these 8 bytes (checked with sha256sum).
  EXPECT_EQ(MembershipRank("r1", "dev-1"), 0xc6a3a4dee0af6da7u);
}

TEST(MembershipTest, PicksAreTheSameAcrossCallsAndInputOrders) {
  auto devices = Fleet({{"jetson", 40}, {"rpi", 25}, {"", 10}});
  const auto first = PickNewMembers("rollout-a", devices, 20);
  ASSERT_EQ(first.size(), 20u);
  std::mt19937 shuffle(7);
  for (int i = 0; i < 20; ++i) {
    std::shuffle(devices.begin(), devices.end(), shuffle);
    EXPECT_EQ(PickNewMembers("rollout-a", devices, 20), first);
  }
  EXPECT_NE(PickNewMembers("rollout-b", devices, 20), first)
      << "another rollout takes other devices first";
}

TEST(MembershipTest, WavesAreCumulativeAndDisjoint) {
  auto devices = Fleet({{"jetson", 60}, {"rpi", 40}});
  const auto waves = RunWaves("r", devices, DefaultPlan());
  ASSERT_EQ(waves.size(), 4u);
  EXPECT_EQ(waves[0].size(), 1u);
  EXPECT_EQ(waves[1].size(), 9u);
  EXPECT_EQ(waves[2].size(), 40u);
  EXPECT_EQ(waves[3].size(), 50u);
  std::set<std::string> all;
  for (const auto& w : waves) all.insert(w.begin(), w.end());
  EXPECT_EQ(all.size(), 100u) << "every device exactly once";
}

TEST(MembershipTest, AddingADeviceDoesNotMoveAssignedOnes) {
  auto devices = Fleet({{"jetson", 30}, {"rpi", 30}});
  const WavePlan plan = DefaultPlan();
  auto wave0 = PickNewMembers("r", devices, CumulativeTarget(plan, 0, devices.size()));
  MarkAssigned(devices, wave0);
  auto wave1 = PickNewMembers("r", devices, CumulativeTarget(plan, 1, devices.size()));
  MarkAssigned(devices, wave1);

  // Devices that start matching later, of a new hw value too.
  for (int i = 0; i < 15; ++i) devices.push_back({absl::StrCat("late-", i), "coral", false});
  auto wave2 = PickNewMembers("r", devices, CumulativeTarget(plan, 2, devices.size()));
  for (const std::string& id : wave2) {
    EXPECT_EQ(std::count(wave0.begin(), wave0.end(), id), 0);
    EXPECT_EQ(std::count(wave1.begin(), wave1.end(), id), 0);
  }
  EXPECT_EQ(wave0.size() + wave1.size() + wave2.size(), 38u) << "50% of 75, rounded up";
  EXPECT_GE(PerHw(devices, wave2)["coral"], 1) << "the new hw value gets its share";

  // Had everything matched from the start, the first picks are the same: a device's place
  // depends on the rollout and its own id, not on who else matches.
  auto fresh = Fleet({{"jetson", 30}, {"rpi", 30}});
  EXPECT_EQ(PickNewMembers("r", fresh, 1), wave0);
}

TEST(MembershipTest, EveryHwValueGetsItsProportionalShareOfEveryWave) {
  const std::map<std::string, int> sizes{
      {"jetson", 500}, {"rpi", 300}, {"coral", 150}, {"x86", 50}};
  auto devices = Fleet(sizes);
  WavePlan plan = DefaultPlan();
  std::vector<std::string> so_far;
  for (size_t w = 0; w < plan.waves.size(); ++w) {
    const uint64_t target = CumulativeTarget(plan, w, devices.size());
    auto picked = PickNewMembers("spread", devices, target);
    MarkAssigned(devices, picked);
    so_far.insert(so_far.end(), picked.begin(), picked.end());
    ASSERT_EQ(so_far.size(), target);
    const auto counts = PerHw(devices, so_far);
    for (const auto& [hw, n] : sizes) {
      const double share = static_cast<double>(target) * n / 1000.0;
      SCOPED_TRACE(absl::StrCat("wave ", w, " hw ", hw));
      EXPECT_LE(std::abs(counts.count(hw) ? counts.at(hw) - share : share), 1.0);
    }
  }
}

TEST(MembershipTest, EveryHwValueAppearsInTheFirstWaveWhenItsSizeAllows) {
  auto devices = Fleet({{"jetson", 97}, {"rpi", 1}, {"coral", 1}, {"", 1}});
  auto picked = PickNewMembers("r", devices, 4);
  auto counts = PerHw(devices, picked);
  EXPECT_EQ(counts.size(), 4u) << "one of each, though rpi's share is 0.04";
  for (const auto& [hw, n] : counts) EXPECT_EQ(n, 1) << hw;

  picked = PickNewMembers("r", devices, 2);
  counts = PerHw(devices, picked);
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_EQ(counts["jetson"], 1) << "too small for all: the largest group first";
}

TEST(MembershipTest, DevicesWithoutHwAreOneGroupAndATargetBeyondTheFleetTakesAll) {
  auto devices = Fleet({{"", 5}});
  EXPECT_EQ(PickNewMembers("r", devices, 100).size(), 5u);
  MarkAssigned(devices, PickNewMembers("r", devices, 3));
  EXPECT_EQ(PickNewMembers("r", devices, 3).size(), 0u) << "already covered";
  EXPECT_EQ(PickNewMembers("r", devices, 4).size(), 1u);
  EXPECT_TRUE(PickNewMembers("r", {}, 10).empty());
}

TEST(MembershipTest, LateDevicesJoinTheCurrentWave) {
  EXPECT_EQ(WaveForLateDevice(v1::ROLLOUT_STATE_RUNNING, 2, 4), 2u);
  EXPECT_EQ(WaveForLateDevice(v1::ROLLOUT_STATE_SUCCEEDED, 3, 4), 3u);
  EXPECT_EQ(WaveForLateDevice(v1::ROLLOUT_STATE_PENDING, 0, 4), std::nullopt);
  EXPECT_EQ(WaveForLateDevice(v1::ROLLOUT_STATE_PAUSED, 1, 4), std::nullopt);
  EXPECT_EQ(WaveForLateDevice(v1::ROLLOUT_STATE_ABORTED, 1, 4), std::nullopt);
  EXPECT_EQ(WaveForLateDevice(v1::ROLLOUT_STATE_ROLLED_BACK, 1, 4), std::nullopt);
}

}  // namespace
}  // namespace edgefleet::server::rollout
